//! setpoint-jepsen's library: the pieces of the Jepsen-style verifier (issue 4), starting with
//! the checkers, which decide from recorded observations alone whether what clients saw was
//! allowed. Running clusters, faults and workloads come later; the binary stays a stub that
//! exits 2 until they do.

pub mod checker;
