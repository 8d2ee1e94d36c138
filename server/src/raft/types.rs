//! The types openraft is instantiated with: the replicated command, its result, the member.
//!
//! Commands carry etcd's request messages prost-encoded, so a follower can forward a client's
//! request to the leader unchanged and every member applies exactly the same bytes. This
//! module defines data only; `apply` gives commands their meaning.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A member id: etcd's 64-bit member ID, also openraft's node id. Never reused.
pub type NodeId = u64;

/// A member as Raft's membership records it: its name and peer URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

/// One replicated state change. Request bodies are etcd's messages, prost-encoded.
///
/// The bodies are serialized as byte strings (`serde_bytes`): bincode then copies them whole
/// instead of visiting every byte as a sequence element, which cost ~5,000 instructions to
/// read back and ~3,000 to write per 256-byte put (callgrind). The encoding is the same
/// bytes either way (a u64 length, then the bytes), so logs written before read unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put(#[serde(with = "serde_bytes")] Vec<u8>),
    DeleteRange(#[serde(with = "serde_bytes")] Vec<u8>),
    Txn(#[serde(with = "serde_bytes")] Vec<u8>),
    Compact(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A member announces the client URLs it serves (etcd's "publish").
    Publish {
        member_id: NodeId,
        name: String,
        client_urls: Vec<String>,
    },
}

impl Command {
    /// Size of the client request a command carries (what --max-request-bytes limits).
    pub fn request_len(&self) -> usize {
        match self {
            Command::Put(b) | Command::DeleteRange(b) | Command::Txn(b) | Command::Compact(b) => {
                b.len()
            }
            Command::Publish { .. } => 0,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Command::Put(_) => "put",
            Command::DeleteRange(_) => "delete_range",
            Command::Txn(_) => "txn",
            Command::Compact(_) => "compact",
            Command::Publish { .. } => "publish",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// What applying a command answered: the store revision after it, and either the prost-encoded
/// etcd response message or the etcd error it ended in (deterministic on every member).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    pub revision: i64,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub error: Option<Error>,
}

openraft::declare_raft_types!(
    /// Setpoint's openraft type configuration.
    pub TypeConfig:
        D = Command,
        R = ApplyResult,
        NodeId = NodeId,
        Node = Member,
);

pub type Raft =
    openraft::Raft<TypeConfig, super::state_machine::StateMachine<crate::storage::RocksEngine>>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, super::snapshot::SnapshotData>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The same shapes with plain `Vec<u8>` fields, as logs were written before.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum PlainCommand {
        Put(Vec<u8>),
        DeleteRange(Vec<u8>),
        Txn(Vec<u8>),
        Compact(Vec<u8>),
        Publish {
            member_id: NodeId,
            name: String,
            client_urls: Vec<String>,
        },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct PlainResult {
        revision: i64,
        body: Vec<u8>,
        error: Option<Error>,
    }

    #[test]
    fn byte_string_fields_encode_as_plain_byte_vectors_did() {
        let body = (0..=255u8).collect::<Vec<u8>>();
        let pairs = [
            (Command::Put(body.clone()), PlainCommand::Put(body.clone())),
            (
                Command::DeleteRange(Vec::new()),
                PlainCommand::DeleteRange(Vec::new()),
            ),
            (Command::Txn(body.clone()), PlainCommand::Txn(body.clone())),
            (
                Command::Compact(vec![8, 1]),
                PlainCommand::Compact(vec![8, 1]),
            ),
        ];
        for (cmd, plain) in pairs {
            let old = bincode::serialize(&plain).expect("serialize");
            assert_eq!(bincode::serialize(&cmd).expect("serialize"), old);
            assert_eq!(
                bincode::deserialize::<Command>(&old).expect("deserialize"),
                cmd
            );
        }
        let result = ApplyResult {
            revision: 9,
            body: body.clone(),
            error: Some(Error::Timeout),
        };
        let old = bincode::serialize(&PlainResult {
            revision: 9,
            body,
            error: Some(Error::Timeout),
        })
        .expect("serialize");
        assert_eq!(bincode::serialize(&result).expect("serialize"), old);
        assert_eq!(
            bincode::deserialize::<ApplyResult>(&old).expect("deserialize"),
            result
        );
    }
}
