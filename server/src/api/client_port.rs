//! One client port, two protocols, as etcd's client URL has: gRPC (HTTP/2, the v3 API) and
//! plain HTTP/1.1 (`/health`, `/version`, `/metrics`, see [`super::http`]).
//!
//! [`split`] accepts the port's connections and looks at each one's first bytes without
//! taking them: the HTTP/2 preface sends it to the gRPC server (through
//! [`authority::AuthorityFix`]), anything else to the HTTP/1.1 server, which answers what it
//! does not understand. Each connection is looked at in a task of its own, so one that sends
//! nothing holds up no other; one that sends nothing, or too little to decide, is closed after
//! a while or when the server stops.
//!
//! Not here: what either server answers; TLS (the client port is plain TCP).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::authority::{self, AuthorityFix, PREFACE};

/// Connections accepted and not yet taken by their server, per protocol.
const QUEUED_CONNECTIONS: usize = 128;
/// Bytes that tell the protocols apart: every HTTP/1.1 method differs from `PRI` by its
/// third byte at the latest.
const DECIDING_BYTES: usize = 3;
/// How long to wait before looking again at a connection whose first bytes are too few to
/// decide.
const PEEK_PAUSE: Duration = Duration::from_millis(5);
/// A connection whose first bytes do not decide within this long is closed (clients of
/// either protocol speak first, at once).
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// The client port's connections, by protocol.
pub struct ClientPort {
    /// For `tonic::transport::Server::serve_with_incoming_shutdown`.
    pub grpc: ReceiverStream<io::Result<AuthorityFix<TcpStream>>>,
    /// For `axum::serve`.
    pub http: HttpConnections,
}

/// The HTTP/1.1 connections of a client port, as an axum listener.
pub struct HttpConnections {
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for HttpConnections {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The port stopped accepting: only the server's shutdown ends this.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Starts accepting `listener`'s connections and hands each to its protocol's server. The
/// accepting stops once the gRPC server has let go of its connections (it stopped).
pub fn split(listener: TcpListener) -> io::Result<ClientPort> {
    let local = listener.local_addr()?;
    let (grpc_tx, grpc_rx) = mpsc::channel(QUEUED_CONNECTIONS);
    let (http_tx, http_rx) = mpsc::channel(QUEUED_CONNECTIONS);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                s = authority::accept(&listener) => s,
                _ = grpc_tx.closed() => return,
            };
            tokio::spawn(hand_over(stream, grpc_tx.clone(), http_tx.clone()));
        }
    });
    Ok(ClientPort {
        grpc: ReceiverStream::new(grpc_rx),
        http: HttpConnections { rx: http_rx, local },
    })
}

/// Sends `stream` to its protocol's server once its first bytes tell which; drops it if it
/// closes or does not tell in time, or if the server stops first.
async fn hand_over(
    stream: TcpStream,
    grpc_tx: mpsc::Sender<io::Result<AuthorityFix<TcpStream>>>,
    http_tx: mpsc::Sender<(TcpStream, SocketAddr)>,
) {
    let decided = tokio::select! {
        p = tokio::time::timeout(FIRST_BYTES_TIMEOUT, protocol(&stream)) => p,
        _ = grpc_tx.closed() => return,
    };
    match decided {
        Ok(Ok(Protocol::Grpc)) => {
            let _ = grpc_tx.send(Ok(AuthorityFix::new(stream))).await;
        }
        Ok(Ok(Protocol::Http1)) => match stream.peer_addr() {
            Ok(peer) => {
                let _ = http_tx.send((stream, peer)).await;
            }
            Err(e) => tracing::debug!(error = %e, "client connection lost"),
        },
        Ok(Ok(Protocol::Closed)) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "client connection lost"),
        Err(_) => tracing::debug!("client connection did not say what it speaks; closed"),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Http1,
    /// Closed before sending anything.
    Closed,
}

/// Which server `stream` is for, from its first bytes (left unread); waits until they tell.
async fn protocol(stream: &TcpStream) -> io::Result<Protocol> {
    let mut buf = [0u8; DECIDING_BYTES];
    loop {
        // Waits for at least one byte.
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Ok(Protocol::Closed);
        }
        if let Some(p) = classify(&buf[..n]) {
            return Ok(p);
        }
        tokio::time::sleep(PEEK_PAUSE).await;
    }
}

/// The protocol `first` (a connection's first bytes) starts, or `None` while they are too
/// few to tell.
fn classify(first: &[u8]) -> Option<Protocol> {
    let n = first.len().min(DECIDING_BYTES);
    if first[..n] != PREFACE[..n] {
        Some(Protocol::Http1)
    } else if n == DECIDING_BYTES {
        Some(Protocol::Grpc)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn the_http2_preface_and_http1_methods_are_told_apart() {
        assert_eq!(classify(PREFACE), Some(Protocol::Grpc));
        assert_eq!(classify(b"PRI"), Some(Protocol::Grpc));
        for method in ["GET", "POST", "PUT", "PATCH", "HEAD", "DELETE", "OPTIONS"] {
            assert_eq!(
                classify(method.as_bytes()),
                Some(Protocol::Http1),
                "{method}"
            );
        }
        // One or two bytes of the preface decide nothing yet; one that differs does.
        assert_eq!(classify(b"P"), None);
        assert_eq!(classify(b"PR"), None);
        assert_eq!(classify(b"PO"), Some(Protocol::Http1));
        assert_eq!(classify(b"\x16\x03"), Some(Protocol::Http1));
    }

    /// Each connection reaches its protocol's side with its first bytes still unread, and a
    /// preface arriving a byte at a time is waited for.
    #[tokio::test]
    async fn connections_reach_their_protocol_with_nothing_taken() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut port = split(listener).expect("split");

        let mut http = TcpStream::connect(addr).await.expect("connect");
        http.write_all(b"GET /health HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let (mut conn, _) = axum::serve::Listener::accept(&mut port.http).await;
        let mut got = [0u8; 11];
        conn.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"GET /health");

        let mut grpc = TcpStream::connect(addr).await.expect("connect");
        grpc.write_all(b"P").await.expect("write");
        grpc.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(20)).await;
        grpc.write_all(&PREFACE[1..]).await.expect("write");
        let conn = tokio_stream::StreamExt::next(&mut port.grpc)
            .await
            .expect("a connection")
            .expect("accepted");
        let mut got = [0u8; 24];
        let conn = conn.get_ref();
        let mut read = 0;
        while read < got.len() {
            conn.readable().await.expect("readable");
            match conn.try_read(&mut got[read..]) {
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        assert_eq!(&got, PREFACE);
    }
}
