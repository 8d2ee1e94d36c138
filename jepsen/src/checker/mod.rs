//! Checkers: pure functions from what was observed to a verdict with a minimal
//! counterexample. They know nothing of processes, networks or gRPC.

pub mod append;
pub mod linearizable;
pub mod set;
pub mod watch;
