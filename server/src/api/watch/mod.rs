//! The Watch service: etcd's bidirectional Watch stream.
//!
//! Each client stream gets its own task (`stream`) holding its watchers (`watcher`); events
//! come from the store's watch hub, which queues each published revision for the streams
//! whose watchers want it, and, for watchers that are behind, from storage
//! (`mvcc::watchable`, `mvcc::KvStore::read_events`). Large responses
//! are split for watchers that allow it (`fragment`). The apply path never waits for a
//! watcher. Like etcd, a stream opened with the `hasleader` metadata fails with "no leader"
//! when its member has been without a leader for a while, so clients move elsewhere.

pub mod fragment;
pub mod stream;
pub mod watcher;

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use setpoint_proto::etcdserverpb::watch_server::Watch;
use setpoint_proto::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;
use crate::error::Error;
pub use crate::metrics::WatchMetrics;
use stream::{WatchStream, OUTBOUND_BATCHES};

/// Metadata key etcd clients set ("true") to have a watch fail when the member has no leader.
const REQUIRE_LEADER_KEY: &str = "hasleader";

/// Watch settings taken from the flags.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// etcd's --experimental-watch-progress-notify-interval.
    pub progress_notify_interval: Duration,
    /// A response larger than this is split for watchers that allow fragments (etcd:
    /// --max-request-bytes plus its gRPC allowance).
    pub fragment_bytes: usize,
    /// How often a `hasleader` stream checks for a leader; three leaderless checks in a row
    /// fail it.
    pub leader_check_interval: Duration,
}

pub struct WatchService {
    ctx: Ctx,
}

impl WatchService {
    pub fn new(ctx: Ctx) -> Self {
        WatchService { ctx }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let require_leader = req
            .metadata()
            .get(REQUIRE_LEADER_KEY)
            .is_some_and(|v| v.as_bytes() == b"true");
        if require_leader && self.ctx.node.status().leader.is_none() {
            return Err(Error::NoLeader.into());
        }
        let (tx, rx) = mpsc::channel(OUTBOUND_BATCHES);
        tokio::spawn(WatchStream::serve(
            self.ctx.clone(),
            tx,
            req.into_inner(),
            require_leader,
        ));
        let out = ReceiverStream::new(rx).flat_map(futures::stream::iter);
        Ok(Response::new(Box::pin(out)))
    }
}
