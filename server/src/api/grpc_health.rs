//! The standard gRPC health service (`grpc.health.v1.Health`), which etcd registers on its
//! client port for load balancers and gRPC health probes: the server as a whole (the empty
//! service name) is SERVING while the process serves; any other name is unknown — `Check`
//! fails with etcd's NOT_FOUND "unknown service", `Watch` sends SERVICE_UNKNOWN once and stays
//! open, as grpc-go's health server does. When the server stops, a watch of the server gets
//! NOT_SERVING and every watch ends, so open watches do not hold up the shutdown.
//!
//! Not here: whether the member is healthy in etcd's sense (a leader, a read that succeeds):
//! that is `GET /health` (`super::http`), as on etcd, whose gRPC status does not follow it.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The service, ready for `add_service`; `stop` turns true when the server stops.
pub fn service(stop: watch::Receiver<bool>) -> HealthServer<GrpcHealth> {
    HealthServer::new(GrpcHealth { stop })
}

pub struct GrpcHealth {
    stop: watch::Receiver<bool>,
}

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
        let known = status_of(&request.get_ref().service);
        let first = known.unwrap_or(ServingStatus::ServiceUnknown);
        let mut stop = self.stop.clone();
        // The first answer stands until the server stops (or the client leaves).
        let last = async move {
            let _ = stop.wait_for(|s| *s).await;
            known.map(|_| Ok(response(ServingStatus::NotServing)))
        };
        let stream = futures::stream::once(async move { Ok(response(first)) })
            .chain(futures::stream::once(last).filter_map(futures::future::ready));
        Ok(Response::new(Box::pin(stream)))
    }
}
