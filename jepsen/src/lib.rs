//! setpoint-jepsen's library: the Jepsen-style verifier. `run` wires one test together:
//! `cluster` starts the members behind `proxy` fault injectors, `workload` client processes
//! record a `history`, the `nemesis` breaks things on a schedule, `truth` follows every
//! member's revision history, the `checker`s decide from the record alone whether what
//! clients saw was allowed, and `report` draws it.

pub mod checker;
pub mod cluster;
pub mod failpoints;
pub mod history;
pub mod lazyfs;
pub mod nemesis;
pub mod proxy;
pub mod report;
pub mod run;
pub mod truth;
pub mod workload;
