//! The Cluster service: MemberList from Raft's membership plus the client URLs each member
//! published. Membership changes (add, remove, update, promote) are not built yet and answer
//! UNIMPLEMENTED.

use setpoint_proto::etcdserverpb::cluster_server::Cluster;
use setpoint_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::Ctx;
use crate::error::Error;

pub struct ClusterService {
    ctx: Ctx,
}

impl ClusterService {
    pub fn new(ctx: Ctx) -> Self {
        ClusterService { ctx }
    }

    /// etcd's member list: every voter, with name and client URLs once it has published.
    pub fn members(&self) -> Result<Vec<Member>, Error> {
        let attrs = self.ctx.applier.member_attributes()?;
        Ok(self
            .ctx
            .node
            .members()
            .into_iter()
            .map(|(id, m)| {
                let a = attrs.get(&id);
                Member {
                    id,
                    name: a.map(|a| a.name.clone()).unwrap_or_default(),
                    peer_ur_ls: m.peer_urls,
                    client_ur_ls: a.map(|a| a.client_urls.clone()).unwrap_or_default(),
                    is_learner: false,
                }
            })
            .collect())
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(Status::unimplemented("member add is not built yet"))
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(Status::unimplemented("member remove is not built yet"))
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Status::unimplemented("member update is not built yet"))
    }

    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(MemberListResponse {
            header: Some(self.ctx.node.header(self.ctx.kv.current_revision())),
            members: self.members()?,
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(Status::unimplemented("member promote is not built yet"))
    }
}
