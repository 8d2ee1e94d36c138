//! Consensus: openraft behind Setpoint's own types.
//!
//! `types` declares what travels through the Raft log (`Command`) and what applying it
//! answers (`ApplyResult`); `log_store` keeps the log and vote in the storage engine with
//! group commit; `state_machine` adapts `apply` and snapshots to openraft, `snapshot` keeps
//! those as engine checkpoints; `network` and `peer_service` carry Raft traffic between
//! members over our gRPC peer service, and `forward` the writes a follower hands to the
//! leader; `node` is the handle the API layer uses (propose, linearizable read index, leader,
//! members).
//! Nothing outside this module names openraft types directly, except through these.

pub mod forward;
pub mod identity;
pub mod log_store;
pub mod network;
pub mod node;
pub mod peer_service;
pub mod snapshot;
pub mod state_machine;
pub mod types;
pub mod wal;

pub use node::RaftNode;

/// openraft's storage traits speak `std::io::Error`; ours (storage, apply, serialization)
/// are carried into it with their message.
pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
pub use types::{ApplyResult, Command, Member, NodeId, TypeConfig};

#[cfg(test)]
mod conformance;
