//! Lets real etcd clients that send a malformed HTTP/2 `:authority` reach the gRPC services.
//!
//! etcdctl 3.4 (`endpoint status --cluster`) sends `:authority: http://127.0.0.1:2379`, and
//! clientv3 3.5.0 sends `#initially=[http://...]`. grpc-go (etcd) ignores the value; Rust's h2
//! resets the stream with PROTOCOL_ERROR ("malformed authority"). [`AuthorityFix`] sits between
//! an accepted connection and the gRPC server and rewrites only the client-to-server bytes: it
//! passes every frame through untouched except header blocks (HEADERS plus their CONTINUATION
//! frames), which it decodes with the client's HPACK context, repairs (`http://h:p` becomes
//! `h:p`; a value nothing valid can be taken from is dropped, `:authority` being optional) and
//! re-encodes, every block, as literals without indexing, so h2's own HPACK table stays empty
//! and can never disagree with what the client meant. The first header block of a connection
//! decides: if it needs no repair, it and everything after it pass untouched (clients keep
//! one `:authority` per connection — grpc-go per ClientConn — so the rest would not need one
//! either, and decoding every block cost ~7 % of the server's instructions per request;
//! a later block with a malformed value then meets h2's own refusal, as without this layer).
//! The client port wraps each gRPC connection in it (`super::client_port`); [`incoming`] does the
//! same for a whole listener (the tests' servers).
//!
//! What it is not: a general HTTP/2 proxy or validator. Other frames, and every protocol rule
//! other than header-block framing, are left to h2 (which still rejects what it should).
//! Server-to-client bytes are not touched. It assumes the server keeps h2's default
//! SETTINGS_HEADER_TABLE_SIZE (4096) and SETTINGS_MAX_FRAME_SIZE (16384); a header block it
//! cannot decode, or one over 1 MiB, closes the connection with an I/O error.
//!
//! The HPACK code here is deliberately small: Huffman strings are decoded by the
//! `httlib-huffman` crate, and the HPACK crates available were each ruled out (`hpack` and
//! `fluke-hpack` panic on malformed input, `httlib-hpack` indexes out of bounds on truncated
//! input, `hpack_codec` mis-accounts its dynamic table, `loona-hpack` is correct but rebuilds a
//! Huffman table per string, ~30 µs, and h2 clients Huffman-code `:path` on every request).
//! The tests check this decoder against `loona-hpack` on random header-block sequences.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::codegen::http::uri::Authority;
use tonic::transport::server::Connected;

/// The 24 bytes an HTTP/2 client sends first.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// h2's default SETTINGS_MAX_FRAME_SIZE, which the server does not raise.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// h2's default SETTINGS_HEADER_TABLE_SIZE: the largest table the client's encoder may use.
const HEADER_TABLE_SIZE: usize = 4_096;
/// Largest header block accepted, as received and as re-encoded.
const MAX_BLOCK: usize = 1 << 20;
/// Below this much room in the caller's buffer, input is staged in our own buffer instead.
const DIRECT_MIN: usize = 64;
/// How much is read at a time into our own buffer.
const READ_CHUNK: usize = 16 * 1024;
/// Buffers grown past this by a large header block are shrunk back afterwards.
const KEEP_CAPACITY: usize = 64 * 1024;

/// An accepted connection whose HTTP/2 header blocks are repaired on the way in (see the
/// module doc). Writes go straight to the inner stream.
pub struct AuthorityFix<S> {
    inner: S,
    rw: Rewriter,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            rw: Rewriter::new(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.rw.poll_read(&mut this.inner, cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for AuthorityFix<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Accepts connections from `listener` forever, each wrapped in [`AuthorityFix`]: pass it to
/// `serve_with_incoming_shutdown`.
pub fn incoming(
    listener: TcpListener,
) -> impl Stream<Item = io::Result<AuthorityFix<TcpStream>>> + Send + 'static {
    futures::stream::unfold(listener, |listener| async move {
        let stream = accept(&listener).await;
        Some((Ok(AuthorityFix::new(stream)), listener))
    })
}

/// The next connection from `listener`, with TCP_NODELAY set. Failed accepts are not
/// returned (tonic would stop serving on some of them): a connection's own failure is
/// skipped, and running out of descriptors or memory is retried after a short pause.
pub async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
                return stream;
            }
            Err(e) if per_connection(&e) => {
                tracing::debug!(error = %e, "accept failed for one connection");
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying in 100ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

/// The `:authority` value to forward: `value` itself when valid; else, if it holds `://`, the
/// host[:port] after it; else `None` (drop the header).
fn fixed_authority(value: &[u8]) -> Option<&[u8]> {
    if Authority::try_from(value).is_ok() {
        return Some(value);
    }
    let at = value.windows(3).position(|w| w == b"://")?;
    let mut rest = &value[at + 3..];
    while let [b'/', tail @ ..] = rest {
        rest = tail; // `scheme:///host:port`
    }
    let end = if rest.first() == Some(&b'[') {
        // An IPv6 literal: through its `]`, then an optional `:port`.
        let mut end = rest.iter().position(|&c| c == b']')? + 1;
        if rest.get(end) == Some(&b':') {
            end += 1;
            while rest.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
        end
    } else {
        rest.iter()
            .position(|c| matches!(c, b'/' | b']' | b';' | b','))
            .unwrap_or(rest.len())
    };
    let candidate = &rest[..end];
    Authority::try_from(candidate).is_ok().then_some(candidate)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("http/2 header rewrite: {msg}"),
    )
}

#[derive(Clone, Copy)]
enum Phase {
    /// This many bytes of the client preface seen.
    Preface(usize),
    Frames,
    /// Not HTTP/2 (the preface did not match): everything passes through, h2 rejects it.
    Raw,
    /// The first header block needed no repair: everything after it passes through.
    Through,
}

/// A HEADERS or CONTINUATION frame whose payload is being gathered.
struct OpenFrame {
    ty: u8,
    flags: u8,
    /// Payload bytes still to come.
    remaining: usize,
    /// Where its payload starts in `Rewriter::block`.
    start: usize,
}

/// What the first HEADERS frame of the block under assembly said.
struct BlockInfo {
    /// The stream id field as received (reserved bit included).
    stream: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
}

/// The read-side state of one connection.
///
/// Bytes read but not yet handed out live in `pending` as `[0, ready)` processed and waiting
/// (handed out from `delivered`), then `[ready, len)` read but not yet scanned. A rewritten
/// header block waits in `out`, which always goes out after `pending[..ready]` and before
/// anything scanned later. When nothing is waiting, input is read straight into the caller's
/// buffer and scanned there, so frames other than header blocks are not copied at all.
struct Rewriter {
    phase: Phase,
    /// Payload bytes of a passed-through frame still to come.
    pass: usize,
    frame: Option<OpenFrame>,
    info: Option<BlockInfo>,
    /// The header block under assembly (HPACK fragments, padding and priority removed).
    block: Vec<u8>,
    hpack: hpack::Decoder,
    /// The connection's first header block has been seen (and chose rewriting or passing).
    decided: bool,
    /// Scratch: the re-encoded block.
    enc: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    pending: Vec<u8>,
    ready: usize,
    delivered: usize,
    /// The unscanned part of `pending` is an incomplete frame header: read more first.
    stalled: bool,
    failed: Option<String>,
}

impl Rewriter {
    fn new() -> Self {
        Rewriter {
            phase: Phase::Preface(0),
            pass: 0,
            frame: None,
            info: None,
            block: Vec::new(),
            hpack: hpack::Decoder::new(HEADER_TABLE_SIZE),
            decided: false,
            enc: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            pending: Vec::new(),
            ready: 0,
            delivered: 0,
            stalled: false,
            failed: None,
        }
    }

    fn poll_read<S: AsyncRead + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some(msg) = &self.failed {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, msg.clone())));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // 1. Processed input waiting.
            if self.delivered < self.ready {
                let n = (self.ready - self.delivered).min(buf.remaining());
                buf.put_slice(&self.pending[self.delivered..self.delivered + n]);
                self.delivered += n;
                if self.delivered == self.ready {
                    self.pending.drain(..self.ready);
                    self.ready = 0;
                    self.delivered = 0;
                }
                return Poll::Ready(Ok(()));
            }
            // 2. A rewritten header block waiting.
            if self.out_pos < self.out.len() {
                let n = (self.out.len() - self.out_pos).min(buf.remaining());
                buf.put_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                if self.out_pos == self.out.len() {
                    self.out.clear();
                    self.out_pos = 0;
                    shrink(&mut self.out);
                }
                return Poll::Ready(Ok(()));
            }
            // 3. Input read earlier and not scanned yet (it followed a header block).
            if !self.pending.is_empty() && !self.stalled {
                let mut pending = std::mem::take(&mut self.pending);
                let scanned = self.scan(&mut pending);
                self.pending = pending;
                let (kept, consumed, stalled) = self.check(scanned)?;
                self.pending.drain(kept..consumed);
                self.ready = kept;
                self.stalled = stalled;
                continue;
            }
            // 4. Read more: into the caller's buffer when it has room, after the (at most 8)
            // bytes of an incomplete frame header held back last time.
            let carry = self.pending.len();
            if buf.remaining() >= carry + DIRECT_MIN {
                let start = buf.filled().len();
                buf.put_slice(&self.pending);
                match Pin::new(&mut *inner).poll_read(cx, buf) {
                    Poll::Pending => {
                        buf.set_filled(start);
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => {
                        buf.set_filled(start);
                        return Poll::Ready(Err(e));
                    }
                    Poll::Ready(Ok(())) => {}
                }
                let end = buf.filled().len();
                if end == start + carry {
                    buf.set_filled(start);
                    return Poll::Ready(Ok(())); // EOF
                }
                self.pending.clear();
                let region = &mut buf.filled_mut()[start..end];
                let scanned = self.scan(region);
                let (kept, consumed, stalled) = match self.check(scanned) {
                    Ok(r) => r,
                    Err(e) => {
                        buf.set_filled(start);
                        return Poll::Ready(Err(e));
                    }
                };
                self.pending.extend_from_slice(&region[consumed..]);
                self.stalled = stalled;
                buf.set_filled(start + kept);
                if kept > 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            // The caller's buffer is tiny: stage the input in ours.
            let len = self.pending.len();
            self.pending.resize(len + READ_CHUNK, 0);
            let mut staging = ReadBuf::new(&mut self.pending[len..]);
            let res = Pin::new(&mut *inner).poll_read(cx, &mut staging);
            let n = staging.filled().len();
            self.pending.truncate(len + n);
            ready!(res)?;
            if n == 0 {
                return Poll::Ready(Ok(())); // EOF
            }
            self.stalled = false;
        }
    }

    /// Records a scan failure so that every later read fails too.
    fn check<T>(&mut self, scanned: io::Result<T>) -> io::Result<T> {
        scanned.inspect_err(|e| {
            tracing::debug!(error = %e, "closing connection");
            self.failed = Some(e.to_string());
        })
    }

    /// Scans freshly read `data` in place. Bytes to forward unchanged are moved to the front;
    /// bytes of header blocks are taken into `self.block`. Stops right after completing a
    /// header block (whose rewrite is then in `self.out`) or before an incomplete frame header.
    /// Returns (bytes kept at the front, bytes scanned, whether it stopped for lack of input).
    fn scan(&mut self, data: &mut [u8]) -> io::Result<(usize, usize, bool)> {
        let len = data.len();
        let (mut r, mut w) = (0, 0);
        fn keep(data: &mut [u8], r: &mut usize, w: &mut usize, n: usize) {
            if *w != *r {
                data.copy_within(*r..*r + n, *w);
            }
            *r += n;
            *w += n;
        }
        while r < len {
            match self.phase {
                Phase::Raw | Phase::Through => {
                    let n = len - r;
                    keep(data, &mut r, &mut w, n);
                }
                Phase::Preface(seen) => {
                    let n = (PREFACE.len() - seen).min(len - r);
                    if data[r..r + n] != PREFACE[seen..seen + n] {
                        self.phase = Phase::Raw;
                        continue;
                    }
                    keep(data, &mut r, &mut w, n);
                    self.phase = if seen + n == PREFACE.len() {
                        Phase::Frames
                    } else {
                        Phase::Preface(seen + n)
                    };
                }
                Phase::Frames if self.pass > 0 => {
                    let n = self.pass.min(len - r);
                    keep(data, &mut r, &mut w, n);
                    self.pass -= n;
                }
                Phase::Frames if self.frame.is_some() => {
                    if self.absorb(data, &mut r)? {
                        return Ok((w, r, false));
                    }
                }
                Phase::Frames => {
                    if len - r < FRAME_HEADER_LEN {
                        return Ok((w, r, true));
                    }
                    let h = &data[r..r + FRAME_HEADER_LEN];
                    let length =
                        usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    let (ty, flags) = (h[3], h[4]);
                    let stream = [h[5], h[6], h[7], h[8]];
                    let in_block = self.info.is_some();
                    if in_block {
                        let same_stream = self
                            .info
                            .as_ref()
                            .is_some_and(|i| stream_id(i.stream) == stream_id(stream));
                        if ty != TYPE_CONTINUATION || !same_stream {
                            return Err(invalid("header block interrupted by another frame"));
                        }
                    }
                    if ty == TYPE_HEADERS || in_block {
                        if self.block.len() + length > MAX_BLOCK {
                            return Err(invalid("header block over 1 MiB"));
                        }
                        if ty == TYPE_HEADERS {
                            self.info = Some(BlockInfo {
                                stream,
                                end_stream: flags & FLAG_END_STREAM != 0,
                                priority: None,
                            });
                        }
                        self.frame = Some(OpenFrame {
                            ty,
                            flags,
                            remaining: length,
                            start: self.block.len(),
                        });
                        r += FRAME_HEADER_LEN;
                        if self.absorb(data, &mut r)? {
                            return Ok((w, r, false));
                        }
                    } else {
                        keep(data, &mut r, &mut w, FRAME_HEADER_LEN);
                        self.pass = length;
                    }
                }
            }
        }
        Ok((w, r, false))
    }

    /// Takes what `data[*r..]` holds of the open frame's payload. Returns whether that
    /// completed a header block.
    fn absorb(&mut self, data: &[u8], r: &mut usize) -> io::Result<bool> {
        let Some(frame) = self.frame.as_mut() else {
            return Ok(false);
        };
        let n = frame.remaining.min(data.len() - *r);
        self.block.extend_from_slice(&data[*r..*r + n]);
        *r += n;
        frame.remaining -= n;
        if frame.remaining > 0 {
            return Ok(false);
        }
        let Some(frame) = self.frame.take() else {
            return Ok(false);
        };
        if frame.ty == TYPE_HEADERS {
            // Pad Length? Priority? Fragment Padding?
            let payload = &self.block[frame.start..];
            let (mut lo, mut hi) = (0, payload.len());
            if frame.flags & FLAG_PADDED != 0 {
                let pad = usize::from(*payload.first().ok_or_else(|| invalid("bad padding"))?);
                lo = 1;
                if pad > hi - lo {
                    return Err(invalid("padding longer than the frame"));
                }
                hi -= pad;
            }
            if frame.flags & FLAG_PRIORITY != 0 {
                if hi - lo < 5 {
                    return Err(invalid("HEADERS too short for its priority"));
                }
                let mut p = [0; 5];
                p.copy_from_slice(&payload[lo..lo + 5]);
                lo += 5;
                if let Some(info) = self.info.as_mut() {
                    info.priority = Some(p);
                }
            }
            self.block.truncate(frame.start + hi);
            self.block.drain(frame.start..frame.start + lo);
        }
        if frame.flags & FLAG_END_HEADERS == 0 {
            return Ok(false);
        }
        self.rewrite_block()?;
        Ok(true)
    }

    /// Decodes the complete header block, repairs `:authority`, and puts the re-encoded block,
    /// framed, in `self.out` — or, for a connection's first block that needs no repair, the
    /// block as received, after which the connection passes through (see the module doc).
    fn rewrite_block(&mut self) -> io::Result<()> {
        let info = self
            .info
            .take()
            .ok_or_else(|| invalid("header block without HEADERS"))?;
        self.enc.clear();
        let enc = &mut self.enc;
        let mut repaired = false;
        self.hpack
            .decode(&self.block, |name, value| {
                let value = if name == b":authority" {
                    match fixed_authority(value) {
                        Some(v) if v.len() == value.len() => v,
                        Some(v) => {
                            repaired = true;
                            if tracing::enabled!(tracing::Level::DEBUG) {
                                let (from, to) =
                                    (String::from_utf8_lossy(value), String::from_utf8_lossy(v));
                                tracing::debug!(%from, %to, "rewrote :authority");
                            }
                            v
                        }
                        None => {
                            repaired = true;
                            if tracing::enabled!(tracing::Level::DEBUG) {
                                let value = String::from_utf8_lossy(value);
                                tracing::debug!(%value, "dropped invalid :authority");
                            }
                            return Ok(());
                        }
                    }
                } else {
                    value
                };
                hpack::encode_literal(enc, name, value);
                if enc.len() > MAX_BLOCK {
                    return Err(invalid("decoded header block over 1 MiB"));
                }
                Ok(())
            })
            .map_err(|e| match e {
                hpack::Error::Hpack(msg) => invalid(msg),
                hpack::Error::Emit(e) => e,
            })?;
        if !repaired && !self.decided {
            // The client's own encoding, so h2's table follows the client's from here on.
            write_frames(&mut self.out, &self.block, &info);
            self.phase = Phase::Through;
        } else {
            write_frames(&mut self.out, &self.enc, &info);
        }
        self.decided = true;
        self.block.clear();
        shrink(&mut self.block);
        shrink(&mut self.enc);
        Ok(())
    }
}

fn stream_id(field: [u8; 4]) -> u32 {
    u32::from_be_bytes(field) & 0x7fff_ffff
}

fn shrink(v: &mut Vec<u8>) {
    if v.capacity() > KEEP_CAPACITY && v.len() <= KEEP_CAPACITY / 4 {
        v.shrink_to(KEEP_CAPACITY / 4);
    }
}

/// Frames header block `block` as one HEADERS frame and as many CONTINUATION frames as
/// needed, no payload over [`MAX_FRAME_PAYLOAD`], no padding.
fn write_frames(out: &mut Vec<u8>, block: &[u8], info: &BlockInfo) {
    let mut rest = block;
    let mut first = true;
    loop {
        let priority = if first { info.priority } else { None };
        let extra = if priority.is_some() { 5 } else { 0 };
        let n = rest.len().min(MAX_FRAME_PAYLOAD - extra);
        let last = n == rest.len();
        let mut flags = 0;
        if first && info.end_stream {
            flags |= FLAG_END_STREAM;
        }
        if priority.is_some() {
            flags |= FLAG_PRIORITY;
        }
        if last {
            flags |= FLAG_END_HEADERS;
        }
        let ty = if first {
            TYPE_HEADERS
        } else {
            TYPE_CONTINUATION
        };
        let length = n + extra;
        out.extend_from_slice(&[
            (length >> 16) as u8,
            (length >> 8) as u8,
            length as u8,
            ty,
            flags,
        ]);
        out.extend_from_slice(&info.stream);
        if let Some(p) = priority {
            out.extend_from_slice(&p);
        }
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        first = false;
        if last {
            return;
        }
    }
}

mod hpack;

#[cfg(test)]
mod tests;
