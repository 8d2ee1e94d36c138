//! Tests of the :authority repair: rewriting, framing, HPACK agreement, real servers.

use std::task::Waker;

use tokio::io::AsyncReadExt;

use super::*;

// ----- building client byte streams -----

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Preface, SETTINGS (one setting) and a connection WINDOW_UPDATE, as clients open.
fn opening() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(frame(0x4, 0, 0, &[0, 4, 0, 0x40, 0, 0]));
    v.extend(frame(0x8, 0, 0, &[0, 0x0f, 0, 0x01]));
    v
}

enum Name<'a> {
    Idx(usize),
    Lit(&'a [u8]),
}

/// One HPACK representation, written the way a client's encoder may write it.
enum Rep<'a> {
    Indexed(usize),
    /// Kind (0x40 with indexing, 0x00 without, 0x10 never), name, value, Huffman-coded?
    Literal(u8, Name<'a>, &'a [u8], bool),
    SizeUpdate(usize),
}

fn put_string(dst: &mut Vec<u8>, s: &[u8], huffman: bool) {
    if huffman {
        let mut h = Vec::new();
        httlib_huffman::encode(s, &mut h).unwrap();
        hpack::encode_int(dst, h.len(), 7, 0x80);
        dst.extend_from_slice(&h);
    } else {
        hpack::encode_int(dst, s.len(), 7, 0);
        dst.extend_from_slice(s);
    }
}

fn encode(reps: &[Rep]) -> Vec<u8> {
    let mut dst = Vec::new();
    for rep in reps {
        match rep {
            Rep::Indexed(i) => hpack::encode_int(&mut dst, *i, 7, 0x80),
            Rep::SizeUpdate(n) => hpack::encode_int(&mut dst, *n, 5, 0x20),
            Rep::Literal(kind, name, value, huffman) => {
                let prefix = if *kind == 0x40 { 6 } else { 4 };
                match name {
                    Name::Idx(i) => hpack::encode_int(&mut dst, *i, prefix, *kind),
                    Name::Lit(n) => {
                        dst.push(*kind);
                        put_string(&mut dst, n, *huffman);
                    }
                }
                put_string(&mut dst, value, *huffman);
            }
        }
    }
    dst
}

/// The first request of a grpc-go client: everything new is Huffman-coded and indexed.
fn first_request(authority: &[u8]) -> Vec<u8> {
    encode(&[
        Rep::Indexed(3), // :method POST
        Rep::Indexed(6), // :scheme http
        Rep::Literal(
            0x40,
            Name::Idx(4),
            b"/etcdserverpb.Maintenance/Status",
            true,
        ),
        Rep::Literal(0x40, Name::Idx(1), authority, true),
        Rep::Literal(0x40, Name::Idx(31), b"application/grpc", true),
        Rep::Literal(0x40, Name::Idx(58), b"grpc-go/1.26.0", true),
        Rep::Literal(0x40, Name::Lit(b"te"), b"trailers", true),
        Rep::Literal(0x00, Name::Lit(b"grpc-timeout"), b"4999876u", true),
    ])
}

/// A later request on the same connection: the repeated fields by dynamic index (62 is
/// the newest entry: te, then user-agent, content-type, :authority, :path).
fn second_request() -> Vec<u8> {
    encode(&[
        Rep::Indexed(3),
        Rep::Indexed(6),
        Rep::Indexed(66),
        Rep::Indexed(65),
        Rep::Indexed(64),
        Rep::Indexed(63),
        Rep::Indexed(62),
        Rep::Literal(0x10, Name::Lit(b"token"), b"secret", false),
    ])
}

fn expected(authority: Option<&[u8]>, token: bool) -> Fields {
    let mut v: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/etcdserverpb.Maintenance/Status"),
    ];
    if let Some(a) = authority {
        v.push((b":authority", a));
    }
    v.extend([
        (&b"content-type"[..], &b"application/grpc"[..]),
        (b"user-agent", b"grpc-go/1.26.0"),
        (b"te", b"trailers"),
    ]);
    if token {
        v.push((b"token", b"secret"));
    } else {
        v.push((b"grpc-timeout", b"4999876u"));
    }
    v.into_iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect()
}

fn data_frame(stream: u32, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 + stream as usize) as u8).collect();
    frame(0x0, 0x1, stream, &payload)
}

/// Two requests; the second refers to the first's table entries.
fn two_requests(authority: &[u8]) -> Vec<u8> {
    let mut v = opening();
    v.extend(frame(0x1, FLAG_END_HEADERS, 1, &first_request(authority)));
    v.extend(data_frame(1, 300));
    v.extend(frame(0x1, FLAG_END_HEADERS, 3, &second_request()));
    v.extend(data_frame(3, 20_000));
    v.extend(frame(0x6, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8])); // PING
    v
}

// ----- running bytes through the rewriter -----

/// Hands out its input `chunk` bytes at a time, answering Pending (after a wake) every
/// third call.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    calls: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.calls += 1;
        if self.calls.is_multiple_of(3) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = self
            .chunk
            .min(self.data.len() - self.pos)
            .min(buf.remaining());
        let pos = self.pos;
        buf.put_slice(&self.data[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Runs `input` through an [`AuthorityFix`], reading with a `read_size` buffer.
fn rewrite(input: &[u8], chunk: usize, read_size: usize) -> io::Result<Vec<u8>> {
    let inner = Chunked {
        data: input.to_vec(),
        pos: 0,
        chunk,
        calls: 0,
    };
    let mut fix = AuthorityFix::new(inner);
    let mut out = Vec::new();
    let mut buf = vec![0u8; read_size];
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut fix).poll_read(&mut cx, &mut rb) {
            Poll::Pending => continue,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    return Ok(out);
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
    }
}

struct Frame {
    ty: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn parse_frames(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 9, "truncated frame header");
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        assert!(bytes.len() >= 9 + len, "truncated frame");
        frames.push(Frame {
            ty: bytes[3],
            flags: bytes[4],
            stream,
            payload: bytes[9..9 + len].to_vec(),
        });
        bytes = &bytes[9 + len..];
    }
    frames
}

/// What came out: the non-header frames, and each header block decoded (by loona-hpack,
/// one context for the connection, as h2 would), after checking the framing rules the
/// rewrite promises.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

struct Output {
    others: Vec<Frame>,
    /// (stream, HEADERS flags, fields)
    blocks: Vec<(u32, u8, Fields)>,
    header_frames: Vec<Frame>,
}

fn inspect(out: &[u8]) -> Output {
    assert_eq!(&out[..24], PREFACE);
    let mut loona = loona_hpack::Decoder::new();
    let mut ours = hpack::Decoder::new(HEADER_TABLE_SIZE);
    let mut result = Output {
        others: Vec::new(),
        blocks: Vec::new(),
        header_frames: Vec::new(),
    };
    let mut open: Option<(u32, u8, Vec<u8>)> = None;
    for f in parse_frames(&out[24..]) {
        if f.ty == TYPE_HEADERS || f.ty == TYPE_CONTINUATION {
            assert!(f.payload.len() <= MAX_FRAME_PAYLOAD, "frame over 16384");
            assert_eq!(f.flags & FLAG_PADDED, 0, "padding emitted");
            let mut fragment = &f.payload[..];
            if f.ty == TYPE_HEADERS {
                assert!(open.is_none(), "HEADERS inside a block");
                if f.flags & FLAG_PRIORITY != 0 {
                    fragment = &fragment[5..];
                }
                open = Some((f.stream, f.flags, Vec::new()));
            } else {
                assert_eq!(f.flags & !FLAG_END_HEADERS, 0, "stray CONTINUATION flags");
            }
            let (stream, _, block) = open.as_mut().expect("CONTINUATION outside a block");
            assert_eq!(*stream, f.stream);
            block.extend_from_slice(fragment);
            if f.flags & FLAG_END_HEADERS != 0 {
                let (stream, flags, block) = open.take().unwrap();
                let fields = loona.decode(&block).expect("loona decodes the output");
                ours.decode(&block, |_, _| Ok(()))
                    .expect("we decode the output");
                assert_eq!(ours.dynamic_len(), 0, "output indexed something");
                result.blocks.push((stream, flags, fields));
            }
            result.header_frames.push(f);
        } else {
            assert!(open.is_none(), "frame inside a header block");
            result.others.push(f);
        }
    }
    assert!(open.is_none(), "unterminated header block");
    result
}

fn others_of(input: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    parse_frames(&input[24..])
        .into_iter()
        .filter(|f| f.ty != TYPE_HEADERS && f.ty != TYPE_CONTINUATION)
        .map(|f| (f.ty, f.flags, f.stream, f.payload))
        .collect()
}

fn others(out: &Output) -> Vec<(u8, u8, u32, Vec<u8>)> {
    out.others
        .iter()
        .map(|f| (f.ty, f.flags, f.stream, f.payload.clone()))
        .collect()
}

// ----- tests -----

#[test]
fn url_authority_becomes_host_port_and_the_rest_is_unchanged() {
    let input = two_requests(b"http://127.0.0.1:2379");
    // Frame boundaries fall everywhere; reads come in every size, down to one byte.
    for (chunk, read_size) in [
        (1 << 20, 8192),
        (1, 8192),
        (7, 100),
        (9, 64),
        (100, 1),
        (3, 63),
        (4096, 65),
        (1 << 20, 16_400),
    ] {
        let out = rewrite(&input, chunk, read_size).unwrap();
        let o = inspect(&out);
        assert_eq!(o.blocks.len(), 2, "chunk {chunk} read {read_size}");
        assert_eq!(o.blocks[0].0, 1);
        assert_eq!(o.blocks[0].2, expected(Some(b"127.0.0.1:2379"), false));
        assert_eq!(o.blocks[1].0, 3);
        assert_eq!(o.blocks[1].2, expected(Some(b"127.0.0.1:2379"), true));
        assert_eq!(
            others(&o),
            others_of(&input),
            "chunk {chunk} read {read_size}"
        );
    }
}

#[test]
fn etcd_initially_list_authority_is_repaired() {
    let input = two_requests(b"#initially=[http://127.0.0.1:2379;http://127.0.0.1:22379]");
    let o = inspect(&rewrite(&input, 1 << 20, 8192).unwrap());
    assert_eq!(o.blocks[0].2, expected(Some(b"127.0.0.1:2379"), false));
    assert_eq!(o.blocks[1].2, expected(Some(b"127.0.0.1:2379"), true));
}

#[test]
fn a_connection_whose_first_block_needs_no_repair_passes_through_byte_for_byte() {
    // Also a later malformed block: past the first block nothing is looked at (h2 judges).
    for authority in [Some(&b"127.0.0.1:2379"[..]), None] {
        let mut input = opening();
        let first = match authority {
            Some(a) => first_request(a),
            None => encode(&[Rep::Indexed(3), Rep::Indexed(6), Rep::Indexed(4)]),
        };
        input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 1, &first));
        input.extend(data_frame(1, 30));
        input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 3, &second_request()));
        input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 5, &[0x80]));
        for (chunk, read_size) in [(1 << 20, 8192), (1, 8192), (7, 3)] {
            assert_eq!(rewrite(&input, chunk, read_size).unwrap(), input);
        }
    }
    // A repaired first block keeps the whole connection rewritten, a valid later value too.
    let mut input = opening();
    input.extend(frame(
        TYPE_HEADERS,
        FLAG_END_HEADERS,
        1,
        &first_request(b"http://h:1"),
    ));
    let valid_later = encode(&[
        Rep::Indexed(3),
        Rep::Indexed(6),
        Rep::Literal(0x40, Name::Idx(1), b"h:2", true),
    ]);
    input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 3, &valid_later));
    let o = inspect(&rewrite(&input, 1 << 20, 8192).unwrap());
    assert_eq!(o.blocks[0].2, expected(Some(b"h:1"), false));
    assert_eq!(
        o.blocks[1].2,
        vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (b":authority".to_vec(), b"h:2".to_vec()),
        ]
    );
}

#[test]
fn unrepairable_authority_is_dropped() {
    for bad in [&b"#no-url-here"[..], b"", b"http://", b"http://bad host:1"] {
        let input = two_requests(bad);
        let o = inspect(&rewrite(&input, 1 << 20, 8192).unwrap());
        assert_eq!(o.blocks[0].2, expected(None, false), "{bad:?}");
        assert_eq!(o.blocks[1].2, expected(None, true), "{bad:?}");
    }
}

#[test]
fn fixed_authority_cases() {
    let cases: [(&str, Option<&str>); 12] = [
        ("127.0.0.1:2379", Some("127.0.0.1:2379")),
        ("localhost", Some("localhost")),
        ("http://127.0.0.1:2379", Some("127.0.0.1:2379")),
        ("https://example.com:2379/path", Some("example.com:2379")),
        ("#initially=[http://127.0.0.1:2379]", Some("127.0.0.1:2379")),
        ("#initially=[http://a:1;http://b:2]", Some("a:1")),
        ("#initially=[http://a:1,http://b:2]", Some("a:1")),
        ("http://[::1]:2379", Some("[::1]:2379")),
        ("#initially=[http://[::1]:2379]", Some("[::1]:2379")),
        ("passthrough:///10.0.0.1:2379", Some("10.0.0.1:2379")),
        ("", None),
        ("http://", None),
    ];
    for (value, want) in cases {
        assert_eq!(
            fixed_authority(value.as_bytes()),
            want.map(str::as_bytes),
            "{value:?}"
        );
    }
    assert_eq!(fixed_authority(b"no scheme here"), None);
}

#[test]
fn continuation_padding_and_priority_are_handled() {
    let block = first_request(b"http://127.0.0.1:2379");
    let (a, rest) = block.split_at(10);
    let (b, c) = rest.split_at(rest.len() / 2);
    // HEADERS: PADDED (pad 7) + PRIORITY + END_STREAM, then two CONTINUATIONs.
    let mut payload = vec![7u8];
    let priority = [0x80, 0, 0, 1, 200];
    payload.extend_from_slice(&priority);
    payload.extend_from_slice(a);
    payload.extend_from_slice(&[0; 7]);
    let mut input = opening();
    input.extend(frame(
        TYPE_HEADERS,
        FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM,
        3,
        &payload,
    ));
    input.extend(frame(TYPE_CONTINUATION, 0, 3, b));
    input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, c));
    input.extend(frame(0x6, 0, 0, &[9; 8]));
    for (chunk, read_size) in [(1 << 20, 8192), (1, 8192), (5, 3)] {
        let o = inspect(&rewrite(&input, chunk, read_size).unwrap());
        assert_eq!(o.blocks.len(), 1);
        let (stream, flags, fields) = &o.blocks[0];
        assert_eq!(*stream, 3);
        assert_eq!(*flags, FLAG_END_HEADERS | FLAG_END_STREAM | FLAG_PRIORITY);
        assert_eq!(*fields, expected(Some(b"127.0.0.1:2379"), false));
        assert_eq!(o.header_frames.len(), 1);
        assert_eq!(&o.header_frames[0].payload[..5], &priority);
        assert_eq!(others(&o), others_of(&input));
    }
}

#[test]
fn block_over_16k_after_reencoding_is_split() {
    // Digits Huffman-code to 5 bits: 20000 of them arrive in 12500 bytes, one frame, and
    // re-encoded raw they need two frames; a 40000-byte raw value needs three.
    let digits: Vec<u8> = (0..20_000).map(|i| b'0' + (i % 10) as u8).collect();
    let big: Vec<u8> = (0..40_000).map(|i| b'a' + (i % 26) as u8).collect();
    for (value, huffman) in [(&digits, true), (&big, false)] {
        let block = encode(&[
            Rep::Indexed(3),
            Rep::Indexed(6),
            Rep::Literal(0x00, Name::Idx(4), b"/x", false),
            Rep::Literal(0x00, Name::Idx(1), b"http://h:1", huffman),
            Rep::Literal(0x00, Name::Lit(b"x-big"), value, huffman),
        ]);
        let mut input = opening();
        let mut frames = block.chunks(MAX_FRAME_PAYLOAD).peekable();
        let mut first = true;
        while let Some(f) = frames.next() {
            let ty = if first {
                TYPE_HEADERS
            } else {
                TYPE_CONTINUATION
            };
            let mut flags = if first { FLAG_END_STREAM } else { 0 };
            if frames.peek().is_none() {
                flags |= FLAG_END_HEADERS;
            }
            input.extend(frame(ty, flags, 1, f));
            first = false;
        }
        input.extend(data_frame(3, 10));
        let o = inspect(&rewrite(&input, 1 << 20, 8192).unwrap());
        let want_frames = value.len().div_ceil(MAX_FRAME_PAYLOAD).max(2);
        assert!(
            o.header_frames.len() >= want_frames,
            "{} frames",
            o.header_frames.len()
        );
        let n = o.header_frames.len();
        for (i, f) in o.header_frames.iter().enumerate() {
            assert_eq!(
                f.ty,
                if i == 0 {
                    TYPE_HEADERS
                } else {
                    TYPE_CONTINUATION
                }
            );
            assert_eq!(f.flags & FLAG_END_HEADERS != 0, i == n - 1);
            assert_eq!(f.flags & FLAG_END_STREAM != 0, i == 0);
        }
        let fields = &o.blocks[0].2;
        assert_eq!(fields[3], (b":authority".to_vec(), b"h:1".to_vec()));
        assert_eq!(fields[4], (b"x-big".to_vec(), value.clone()));
        assert_eq!(others(&o), others_of(&input));
    }
}

#[test]
fn table_size_updates_are_followed() {
    // The client shrinks its table to 0 (evicting everything), then grows it back.
    let mut input = opening();
    input.extend(frame(1, FLAG_END_HEADERS, 1, &first_request(b"http://h:1")));
    let mut b2 = encode(&[Rep::SizeUpdate(0), Rep::SizeUpdate(4096)]);
    b2.extend(first_request(b"http://h:2"));
    input.extend(frame(1, FLAG_END_HEADERS, 3, &b2));
    input.extend(frame(1, FLAG_END_HEADERS, 5, &second_request()));
    let o = inspect(&rewrite(&input, 1 << 20, 8192).unwrap());
    assert_eq!(o.blocks[1].2, expected(Some(b"h:2"), false));
    assert_eq!(o.blocks[2].2, expected(Some(b"h:2"), true));
    // Over SETTINGS_HEADER_TABLE_SIZE, or after a field: an error.
    for bad in [
        encode(&[Rep::SizeUpdate(4097), Rep::Indexed(2)]),
        encode(&[Rep::Indexed(2), Rep::SizeUpdate(100)]),
    ] {
        let mut input = opening();
        input.extend(frame(1, FLAG_END_HEADERS, 1, &bad));
        assert!(rewrite(&input, 1 << 20, 8192).is_err());
    }
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let bad_blocks: Vec<Vec<u8>> = vec![
        vec![0x80],                                     // index 0
        vec![0xff, 0x80],                               // truncated integer
        vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // integer too large
        vec![0xbe],                                     // index 62, table empty
        vec![0x04, 0x05, b'a'],                         // truncated string
        vec![0x04, 0x82, 0xff, 0xff],                   // bad Huffman (EOS)
        vec![0x00],                                     // literal name missing
    ];
    for block in bad_blocks {
        let mut input = opening();
        input.extend(frame(1, FLAG_END_HEADERS, 1, &block));
        input.extend(data_frame(1, 10));
        let inner = Chunked {
            data: input.clone(),
            pos: 0,
            chunk: 1 << 20,
            calls: 0,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut fix = AuthorityFix::new(inner);
            let mut sink = Vec::new();
            let e = fix.read_to_end(&mut sink).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{block:?}");
            // It stays failed.
            assert!(fix.read(&mut [0; 64]).await.is_err());
        });
    }
    // Framing errors: a DATA frame inside a header block; a block over 1 MiB; padding
    // longer than the frame.
    let mut interleaved = opening();
    interleaved.extend(frame(1, 0, 1, &[0x82]));
    interleaved.extend(data_frame(1, 4));
    let mut huge = opening();
    huge.extend(frame(1, 0, 1, &[0x82]));
    for _ in 0..70 {
        huge.extend(frame(TYPE_CONTINUATION, 0, 1, &[0x82; 16_384]));
    }
    let mut padded = opening();
    padded.extend(frame(1, FLAG_PADDED | FLAG_END_HEADERS, 1, &[9, 0x82]));
    let mut wrong_stream = opening();
    wrong_stream.extend(frame(1, 0, 1, &[0x82]));
    wrong_stream.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &[0x84]));
    for input in [interleaved, huge, padded, wrong_stream] {
        let e = rewrite(&input, 1 << 20, 8192).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}

#[test]
fn random_garbage_never_panics() {
    let valid = two_requests(b"http://127.0.0.1:2379");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut ok, mut failed) = (0, 0);
    for i in 0..3000 {
        let mut input = valid.clone();
        if i % 2 == 0 {
            // Flip a few bytes after the preface.
            for _ in 0..1 + rnd() % 4 {
                let at = 24 + (rnd() as usize) % (input.len() - 24);
                input[at] ^= 1 << (rnd() % 8);
            }
        } else {
            // A valid opening, then random bytes shaped like a HEADERS frame.
            input = opening();
            let len = (rnd() % 64) as usize;
            let body: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            input.extend(frame(1, (rnd() as u8) | FLAG_END_HEADERS, 1, &body));
        }
        let chunk = 1 + (rnd() % 50) as usize;
        match rewrite(&input, chunk, 1 + (rnd() % 200) as usize) {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    assert!(ok > 0 && failed > 0, "ok {ok} failed {failed}");
}

#[test]
fn non_http2_bytes_pass_through() {
    let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert_eq!(rewrite(&input, 5, 7).unwrap(), input);
}

mod hpack_agreement;
mod servers;
