//! etcd's plain-HTTP endpoints, which load balancers, kubeadm's liveness probe and
//! `etcdctl check datascale` use: on the client port (HTTP/1.1 beside gRPC, see
//! [`super::client_port`]) `GET /health`, `/version` and `/metrics`; on the metrics port
//! (`--listen-metrics-urls`) `/health` and `/metrics`. Answers are etcd's, status codes and
//! bodies alike:
//! - `/health`: `{"health":"true"}` (200) when this member knows a leader and a linearizable
//!   read (a read index) succeeds within a second; with `serializable=true`, when a local read
//!   succeeds, leader or not — as etcd 3.5 does, so that a liveness probe (kubeadm's asks for
//!   it) does not restart members during an election or a partition; else
//!   `{"health":"false"}` (503). The bodies are etcd 3.4's (3.5 adds a `reason`). Each check
//!   counts in `etcd_server_health_success` or `etcd_server_health_failures`. etcd also fails
//!   it on an active alarm not named in `exclude=`; Setpoint raises no alarms, so `exclude`
//!   changes nothing.
//! - `/version`: the etcd version Setpoint answers as, for the server and the cluster.
//! - `/metrics`: the Prometheus text exposition ([`crate::metrics`]), to any method, as etcd's.
//! - another method on `/health` or `/version`: 405 with `Allow: GET`; another path: 404, both
//!   with etcd's plain text.
//!
//! Not here: etcd's JSON gateway to the v3 API (`/v3/...`), which Setpoint does not serve,
//! and the CORS headers etcd adds on its client port.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use setpoint_proto::etcdserverpb::RangeRequest;

use super::maintenance::ETCD_COMPATIBLE_VERSION;
use super::Ctx;
use crate::metrics::Metrics;

/// How long the read behind a health check may take (etcd's is one second too).
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// The key a serializable health check reads (etcd's).
const HEALTH_KEY: &[u8] = b"health";

const PLAIN_TEXT: &str = "text/plain; charset=utf-8";
/// The Prometheus text format, as etcd labels it.
const METRICS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
struct Endpoints {
    ctx: Ctx,
    metrics: Metrics,
}

/// The client port's HTTP/1.1 endpoints.
pub fn client_router(ctx: Ctx, metrics: Metrics) -> Router {
    metrics_router(ctx, metrics).route("/version", any(version))
}

/// The metrics port's endpoints.
pub fn metrics_router(ctx: Ctx, metrics: Metrics) -> Router {
    Router::new()
        .route("/health", any(health))
        .route("/metrics", any(metrics_text))
        .fallback(not_found)
        .with_state(Endpoints { ctx, metrics })
}

async fn health(State(e): State<Endpoints>, req: Request) -> Response {
    if let Some(refused) = only_get(&req) {
        return refused;
    }
    let serializable = query_value(&req, "serializable") == Some("true");
    let healthy = check_health(&e.ctx, serializable).await;
    if healthy {
        e.metrics.health.success.inc();
        respond(StatusCode::OK, PLAIN_TEXT, r#"{"health":"true"}"#.into())
    } else {
        e.metrics.health.failures.inc();
        failure(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"health":"false"}"#.into(),
        )
    }
}

/// Whether this member can serve reads (see the module doc).
async fn check_health(ctx: &Ctx, serializable: bool) -> bool {
    if serializable {
        // One key from the local store: quick, and it needs no leader.
        let req = RangeRequest {
            key: HEALTH_KEY.to_vec(),
            ..Default::default()
        };
        return ctx.kv.range(&req).is_ok();
    }
    if ctx.node.status().leader.is_none() {
        return false;
    }
    tokio::time::timeout(HEALTH_READ_TIMEOUT, ctx.node.read_index())
        .await
        .is_ok_and(|read| read.is_ok())
}

async fn version(req: Request) -> Response {
    if let Some(refused) = only_get(&req) {
        return refused;
    }
    // etcd's field order; both values are plain version numbers (nothing to escape).
    let body = format!(
        r#"{{"etcdserver":"{}","etcdcluster":"{}"}}"#,
        ETCD_COMPATIBLE_VERSION,
        cluster_version(ETCD_COMPATIBLE_VERSION)
    );
    respond(StatusCode::OK, "application/json", body)
}

/// A cluster version is the server version's major.minor with patch 0.
fn cluster_version(server: &str) -> String {
    let mut parts = server.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}.0"),
        _ => server.to_string(),
    }
}

async fn metrics_text(State(e): State<Endpoints>) -> Response {
    respond(StatusCode::OK, METRICS_TEXT, e.metrics.render())
}

async fn not_found() -> Response {
    failure(StatusCode::NOT_FOUND, "404 page not found".into())
}

/// etcd's refusal of any method but GET.
fn only_get(req: &Request) -> Option<Response> {
    if req.method() == Method::GET {
        return None;
    }
    let mut r = failure(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed".into());
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    Some(r)
}

/// The value of `name` in the request's query, if given.
fn query_value<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find_map(|(k, v)| (k == name).then_some(v))
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// An error answer as Go's `http.Error` writes it: plain text ending in a newline, not to be
/// sniffed as anything else.
fn failure(status: StatusCode, text: String) -> Response {
    let mut r = respond(status, PLAIN_TEXT, text + "\n");
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> Request {
        Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request")
    }

    #[test]
    fn query_values_are_found_by_name() {
        let req = request("/health?exclude=NOSPACE&serializable=true");
        assert_eq!(query_value(&req, "serializable"), Some("true"));
        assert_eq!(query_value(&req, "exclude"), Some("NOSPACE"));
        assert_eq!(query_value(&req, "missing"), None);
        assert_eq!(
            query_value(&request("/health?serializable"), "serializable"),
            Some("")
        );
        assert_eq!(query_value(&request("/health"), "serializable"), None);
    }

    #[test]
    fn the_cluster_version_drops_the_patch_level() {
        assert_eq!(cluster_version("3.5.0"), "3.5.0");
        assert_eq!(cluster_version("3.4.23"), "3.4.0");
    }

    #[test]
    fn other_methods_are_refused_as_etcd_does() {
        let mut req = request("/health");
        *req.method_mut() = Method::POST;
        let r = only_get(&req).expect("refused");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET");
        assert!(only_get(&request("/health")).is_none());
    }
}
