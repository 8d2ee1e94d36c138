//! The Maintenance service: Status (what `etcdctl endpoint status` shows), Alarm and
//! Defragment (a full compaction of this member's storage engine, which gives back the space
//! of deleted and overwritten data as etcd's rewrite of its file does; this member only, as on
//! etcd) and MoveLeader (Raft's leadership transfer, sent to the leader as etcd requires).
//! Hash, HashKV and Snapshot are not built yet and answer UNIMPLEMENTED.
//!
//! Setpoint raises no alarms yet (no space quota, no corruption check), so listing them
//! answers none and disarming has nothing to disarm — what `etcdctl alarm list` and
//! `alarm disarm` print for a healthy etcd. As on etcd, where alarm requests go through Raft,
//! a member that cannot reach its leader answers an error instead. Raising an alarm by hand
//! (ACTIVATE) is refused as not built: it would have to stop writes, which nothing enforces.
//!
//! Status.version reports the etcd API version Setpoint is compatible with, because clients
//! gate features on it; Setpoint's own version is in `setpoint --version` and the logs.

use setpoint_proto::etcdserverpb::alarm_request::AlarmAction;
use setpoint_proto::etcdserverpb::maintenance_server::Maintenance;
use setpoint_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest,
    HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse,
    SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use super::Ctx;
use crate::error::Error;
use crate::storage::Engine;

/// The etcd version Setpoint answers as.
pub const ETCD_COMPATIBLE_VERSION: &str = "3.5.0";

pub struct MaintenanceService {
    ctx: Ctx,
}

impl MaintenanceService {
    pub fn new(ctx: Ctx) -> Self {
        MaintenanceService { ctx }
    }
}

type SnapshotStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        if req.get_ref().action == AlarmAction::Activate as i32 {
            return Err(Status::unimplemented("raising an alarm is not built yet"));
        }
        // A listing (or a disarm) reflects the cluster's state as of now, as etcd's does.
        self.ctx.node.read_index().await?;
        // etcd sends this response without a header; clients print it as such.
        Ok(Response::new(AlarmResponse {
            header: None,
            alarms: Vec::new(),
        }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let st = self.ctx.node.status();
        let db_size = self.ctx.engine.size_on_disk() as i64;
        Ok(Response::new(StatusResponse {
            header: Some(self.ctx.node.header(self.ctx.kv.current_revision())),
            version: ETCD_COMPATIBLE_VERSION.to_string(),
            db_size,
            leader: st.leader.unwrap_or(0),
            raft_index: st.last_log_index,
            raft_term: st.term,
            raft_applied_index: st.applied_index,
            errors: Vec::new(),
            db_size_in_use: db_size,
            is_learner: false,
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let engine = self.ctx.engine.clone();
        tokio::task::spawn_blocking(move || engine.defragment())
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::Internal(e.to_string()))?;
        tracing::info!("finished defragmenting the storage engine");
        // etcd sends this response without a header.
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(Status::unimplemented("hash is not built yet"))
    }

    async fn hash_kv(&self, _: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Err(Status::unimplemented("hashkv is not built yet"))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unimplemented("snapshot is not built yet"))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = req.into_inner().target_id;
        self.ctx.node.transfer_leadership(target).await?;
        // etcd sends this response without a header.
        Ok(Response::new(MoveLeaderResponse { header: None }))
    }
}
