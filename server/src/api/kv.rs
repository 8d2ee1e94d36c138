//! The KV service: Range, Put, DeleteRange, Txn, Compact.
//!
//! Writes become Raft commands carrying the client's request bytes; the applied result is
//! decoded and given etcd's header. Linearizable ranges wait for a read-index point first;
//! serializable ones read the local store at once. Semantics live in `apply` and `mvcc`.

use prost::Message;
use setpoint_proto::etcdserverpb::kv_server::Kv;
use setpoint_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::{validate, Ctx};
use crate::error::{Error, Result};
use crate::raft::Command;

pub struct KvService {
    ctx: Ctx,
}

impl KvService {
    pub fn new(ctx: Ctx) -> Self {
        KvService { ctx }
    }

    /// Replicates a write; returns the response message `apply` produced for it and the
    /// header to give it.
    async fn write<M: Message + Default>(&self, cmd: Command) -> Result<(M, ResponseHeader)> {
        if cmd.request_len() > self.ctx.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        let result = self.ctx.node.propose(cmd).await?;
        if let Some(e) = result.error {
            return Err(e);
        }
        let msg = M::decode(result.body.as_slice()).map_err(|e| Error::Internal(e.to_string()))?;
        Ok((msg, self.ctx.node.header(result.revision)))
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = req.into_inner();
        validate::range(&req)?;
        if !req.serializable {
            self.ctx.node.read_index().await?;
        }
        let out = self.ctx.kv.range(&req).map_err(Error::from)?;
        Ok(Response::new(RangeResponse {
            header: Some(self.ctx.node.header(out.revision)),
            kvs: out.kvs,
            more: out.more,
            count: out.count,
        }))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = req.into_inner();
        validate::put(&req)?;
        let (mut resp, header): (PutResponse, _) =
            self.write(Command::Put(req.encode_to_vec())).await?;
        resp.header = Some(header);
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let req = req.into_inner();
        validate::delete_range(&req)?;
        let (mut resp, header): (DeleteRangeResponse, _) = self
            .write(Command::DeleteRange(req.encode_to_vec()))
            .await?;
        resp.header = Some(header);
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let req = req.into_inner();
        validate::txn(&req, self.ctx.max_txn_ops)?;
        let (mut resp, header): (TxnResponse, _) =
            self.write(Command::Txn(req.encode_to_vec())).await?;
        resp.header = Some(header);
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let req = req.into_inner();
        let (mut resp, header): (CompactionResponse, _) =
            self.write(Command::Compact(req.encode_to_vec())).await?;
        if req.physical {
            self.ctx.compactor.wait_done(req.revision).await;
        }
        resp.header = Some(header);
        Ok(Response::new(resp))
    }
}
