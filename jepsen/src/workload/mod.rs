//! Workloads: client processes that run operations against the cluster and record each one
//! as an invocation and its outcome — `ok`, `fail` (certainly not applied) or `info`
//! (outcome unknown: it may have been applied). Each process speaks to one member through a
//! client that never resends a request that may have been sent; after an `info` the process
//! takes a new number, as in Jepsen, because its earlier operation may still be in flight.
//!
//! A workload turns its part of the history into its checker's input; it does not decide
//! validity (the checkers do) nor break anything (the nemesis does).

pub mod append;
pub mod register;
pub mod set;
pub mod watch;

use crate::cluster::Cluster;
use crate::history::{Op, OpType, Process, Recorder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use setpoint_client::{classify, Client, ClientError, FailureClass};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::Code;

/// A write the cluster acknowledged, with the revision it says the write got: the final
/// revision history must hold exactly this change at exactly this revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedWrite {
    pub revision: i64,
    pub key: Vec<u8>,
    /// `None` for a delete of an existing key.
    pub value: Option<Vec<u8>>,
}

/// What every workload's processes share.
pub struct Ctx {
    pub cluster: Arc<Cluster>,
    pub recorder: Arc<Recorder>,
    /// Operations are started until then.
    pub deadline: Instant,
    /// Per-request timeout; a request without an answer by then is `info`.
    pub timeout: Duration,
    /// Register reads with `serializable` (served by any member from its own state).
    pub serializable_reads: bool,
    /// Pause between one process's operations (bounds the request rate).
    pub think: Duration,
    /// Stop after this many invocations over all workloads.
    pub max_ops: u64,
    pub seed: u64,
    pub acked: Mutex<Vec<AckedWrite>>,
    /// The store's revision after the run, once known (0 before): watchers confirm their
    /// tails against it.
    pub final_revision: AtomicI64,
    /// Revisions a watcher got in two responses: a txn not delivered atomically.
    pub split_txns: Mutex<Vec<i64>>,
    unique: AtomicI64,
    invoked: std::sync::atomic::AtomicU64,
}

impl Ctx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cluster: Arc<Cluster>,
        recorder: Arc<Recorder>,
        deadline: Instant,
        timeout: Duration,
        serializable_reads: bool,
        think: Duration,
        max_ops: u64,
        seed: u64,
    ) -> Ctx {
        Ctx {
            cluster,
            recorder,
            deadline,
            timeout,
            serializable_reads,
            think,
            max_ops,
            seed,
            acked: Mutex::new(Vec::new()),
            final_revision: AtomicI64::new(0),
            split_txns: Mutex::new(Vec::new()),
            unique: AtomicI64::new(1),
            invoked: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A value no other operation of the run writes.
    pub fn unique(&self) -> i64 {
        self.unique.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether processes should start another operation.
    pub fn running(&self) -> bool {
        Instant::now() < self.deadline && self.invoked.load(Ordering::Relaxed) < self.max_ops
    }

    /// The random source of one process, derived from the run's seed.
    pub fn rng(&self, stream: u64) -> StdRng {
        StdRng::seed_from_u64(self.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn ack(&self, w: AckedWrite) {
        crate::cluster::lock(&self.acked).push(w);
    }

    /// Sleeps the think time, jittered.
    pub async fn think(&self, rng: &mut StdRng) {
        let ms = self.think.as_millis() as u64;
        let jitter = if ms > 0 { rng.gen_range(0..=ms) } else { 0 };
        tokio::time::sleep(Duration::from_millis(ms / 2 + jitter)).await;
    }
}

/// How an operation ended, as the history records it.
pub struct Outcome {
    pub kind: OpType,
    pub value: serde_json::Value,
    pub error: Option<String>,
    pub revision: Option<i64>,
}

impl Outcome {
    pub fn ok(value: serde_json::Value, revision: i64) -> Outcome {
        Outcome {
            kind: OpType::Ok,
            value,
            error: None,
            revision: Some(revision),
        }
    }

    pub fn fail(value: serde_json::Value, error: impl Into<String>) -> Outcome {
        Outcome {
            kind: OpType::Fail,
            value,
            error: Some(error.into()),
            revision: None,
        }
    }

    /// The outcome of a request that failed with `err`: `fail` when it certainly did not
    /// take effect (it only read, was never sent, or the server refused it for a reason that
    /// is decided before anything is proposed), `info` otherwise — an unexpected status from
    /// a server may come after the proposal, so it proves nothing.
    pub fn from_error(value: serde_json::Value, err: &ClientError, read_only: bool) -> Outcome {
        let refused = |code| {
            matches!(
                code,
                Code::InvalidArgument
                    | Code::FailedPrecondition
                    | Code::OutOfRange
                    | Code::NotFound
                    | Code::AlreadyExists
                    | Code::PermissionDenied
                    | Code::Unauthenticated
                    | Code::ResourceExhausted
                    | Code::Unimplemented
            )
        };
        let kind = match classify(err) {
            _ if read_only => OpType::Fail,
            FailureClass::NotSent => OpType::Fail,
            FailureClass::Definite if err.code().is_some_and(refused) => OpType::Fail,
            FailureClass::Definite | FailureClass::MaybeSent => OpType::Info,
        };
        Outcome {
            kind,
            value,
            error: Some(err.to_string()),
            revision: None,
        }
    }
}

/// One client process: a number (renumbered after `info`), the member it speaks to, and a
/// client for that member.
pub struct Proc {
    pub number: u64,
    pub stride: u64,
    pub member: usize,
    pub client: Option<Client>,
}

impl Proc {
    pub fn new(number: u64, stride: u64, member: usize) -> Proc {
        Proc {
            number,
            stride,
            member,
            client: None,
        }
    }

    /// The client for this process's member, connected on first use.
    pub async fn client(&mut self, ctx: &Ctx) -> Result<Client, ClientError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = Client::connect(
            vec![ctx.cluster.endpoint(self.member).to_string()],
            crate::cluster::client_options(ctx.timeout),
        )
        .await?;
        self.client = Some(c.clone());
        Ok(c)
    }

    /// Records the invocation, awaits `run`, records its outcome; returns the outcome.
    pub async fn invoke<F, Fut>(
        &mut self,
        ctx: &Ctx,
        f: &str,
        value: serde_json::Value,
        run: F,
    ) -> Outcome
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Outcome>,
    {
        ctx.invoked.fetch_add(1, Ordering::Relaxed);
        let process = Process::Client(self.number);
        ctx.recorder.record(Op {
            index: 0,
            time: 0,
            process,
            kind: OpType::Invoke,
            f: f.to_string(),
            value: value.clone(),
            error: None,
            member: Some(self.member),
            revision: None,
        });
        let outcome = match self.client(ctx).await {
            Ok(client) => run(client).await,
            Err(e) => Outcome::fail(value, format!("connect: {e}")),
        };
        ctx.recorder.record(Op {
            index: 0,
            time: 0,
            process,
            kind: outcome.kind,
            f: f.to_string(),
            value: outcome.value.clone(),
            error: outcome.error.clone(),
            member: Some(self.member),
            revision: outcome.revision,
        });
        if outcome.kind == OpType::Info {
            self.number += self.stride;
            // A fresh connection, as a crashed Jepsen client gets.
            self.client = None;
        }
        outcome
    }
}

/// Parses a decimal value written by a workload.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Txn building blocks, in etcd's terms.
pub mod ops {
    use setpoint_client::proto::etcdserverpb::{
        compare, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    };

    pub fn range(key: &[u8]) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        }
    }

    pub fn put(key: &[u8], value: &[u8]) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                ..Default::default()
            })),
        }
    }

    pub fn delete(key: &[u8]) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: key.to_vec(),
                    prev_kv: true,
                    ..Default::default()
                },
            )),
        }
    }

    /// `value(key) == value`.
    pub fn value_is(key: &[u8], value: &[u8]) -> Compare {
        Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Value as i32,
            key: key.to_vec(),
            target_union: Some(compare::TargetUnion::Value(value.to_vec())),
            ..Default::default()
        }
    }

    /// `mod_revision(key) == revision` (0: the key does not exist).
    pub fn mod_revision_is(key: &[u8], revision: i64) -> Compare {
        Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Mod as i32,
            key: key.to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(revision)),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: tonic::Status, read_only: bool) -> OpType {
        Outcome::from_error(
            serde_json::Value::Null,
            &ClientError::Status(status),
            read_only,
        )
        .kind
    }

    #[test]
    fn a_write_fails_only_when_it_certainly_did_not_happen() {
        // Refused before any proposal: certainly not applied.
        assert_eq!(
            kind(tonic::Status::invalid_argument("bad"), false),
            OpType::Fail
        );
        // "leader changed", "request timed out": may have been applied.
        assert_eq!(
            kind(tonic::Status::unavailable("leader changed"), false),
            OpType::Info
        );
        // Anything unexpected from a server proves nothing.
        assert_eq!(kind(tonic::Status::internal("boom"), false), OpType::Info);
        assert_eq!(
            Outcome::from_error(serde_json::Value::Null, &ClientError::Timeout, false).kind,
            OpType::Info
        );
        // A read changes nothing: its failure is a fail whatever the cause.
        assert_eq!(
            kind(tonic::Status::unavailable("leader changed"), true),
            OpType::Fail
        );
    }
}
