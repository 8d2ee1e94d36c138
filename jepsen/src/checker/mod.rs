//! Checkers: pure functions from what was observed to a verdict with a minimal
//! counterexample. They know nothing of processes, networks or gRPC.

pub mod watch;
