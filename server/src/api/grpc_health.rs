//! The standard gRPC health service (`grpc.health.v1.Health`), which etcd registers on its
//! client port for load balancers and gRPC health probes: the server as a whole (the empty
//! service name) is SERVING while the process serves; any other name is unknown — `Check`
//! fails with etcd's NOT_FOUND "unknown service", `Watch` sends SERVICE_UNKNOWN once and stays
//! open, as grpc-go's health server does.
//!
//! Not here: whether the member is healthy in etcd's sense (a leader, a read that succeeds):
//! that is `GET /health` (`super::http`), as on etcd, whose gRPC status does not follow it.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The service, ready for `add_service`.
pub fn service() -> HealthServer<GrpcHealth> {
    HealthServer::new(GrpcHealth)
}

pub struct GrpcHealth;

/// The status of `service`: the whole server's, or `None` for a name nobody registered.
fn status_of(service: &str) -> Option<ServingStatus> {
    service.is_empty().then_some(ServingStatus::Serving)
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl Health for GrpcHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        match status_of(&request.get_ref().service) {
            Some(s) => Ok(Response::new(response(s))),
            None => Err(Status::not_found("unknown service")),
        }
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let status = status_of(&request.get_ref().service).unwrap_or(ServingStatus::ServiceUnknown);
        // Statuses never change here: the first answer stands until the client leaves.
        let stream = futures::stream::once(async move { Ok(response(status)) })
            .chain(futures::stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }
}
