//! The crash-point control of members built with failpoints — Setpoint's `failpoints`
//! feature, or etcd built with gofail — over the HTTP interface both serve at `GOFAIL_HTTP`:
//! list the points, arm one with a term (`panic`), disarm it.
//!
//! It does not choose which point to arm or when (that is `nemesis`), nor start processes.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// One request to the control at `addr` (host:port); the status and body.
async fn call(addr: &str, method: Method, path: &str, body: &str) -> Result<(StatusCode, String)> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr)
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .with_context(|| format!("failpoint control at {addr} did not answer"))?
}

/// The points the member serves (`GET /`, one `NAME=TERM` per line).
pub async fn list(addr: &str) -> Result<Vec<String>> {
    let (status, body) = call(addr, Method::GET, "/", "").await?;
    if !status.is_success() {
        bail!("failpoint list at {addr}: {status}");
    }
    Ok(body
        .lines()
        .filter_map(|l| l.split('=').next())
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect())
}

/// Arms `name` with `term` (e.g. `panic`).
pub async fn arm(addr: &str, name: &str, term: &str) -> Result<()> {
    let (status, body) = call(addr, Method::PUT, &format!("/{name}"), term).await?;
    if !status.is_success() {
        bail!("arming {name} at {addr}: {status} {}", body.trim());
    }
    Ok(())
}

/// Disarms `name`.
pub async fn disarm(addr: &str, name: &str) -> Result<()> {
    let (status, body) = call(addr, Method::DELETE, &format!("/{name}"), "").await?;
    if !status.is_success() {
        bail!("disarming {name} at {addr}: {status} {}", body.trim());
    }
    Ok(())
}
