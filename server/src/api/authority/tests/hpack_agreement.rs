//! HPACK decoding checked on its own: RFC 7541 examples, table eviction, and agreement with
//! an independent decoder (loona-hpack) on random header-block sequences.

use super::*;

/// RFC 7541 C.3 and C.4: the same three requests, without and with Huffman coding.
#[test]
fn rfc7541_request_examples() {
    let plain: [&[u8]; 3] = [
        b"\x82\x86\x84\x41\x0fwww.example.com",
        b"\x82\x86\x84\xbe\x58\x08no-cache",
        b"\x82\x87\x85\xbf\x40\x0acustom-key\x0ccustom-value",
    ];
    let huffman: [&[u8]; 3] = [
        &[
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ],
        &[
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ],
        &[
            0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f,
            0x89, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
        ],
    ];
    let want: [Vec<(&[u8], &[u8])>; 3] = [
        vec![
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/"),
            (b":authority", b"www.example.com"),
        ],
        vec![
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/"),
            (b":authority", b"www.example.com"),
            (b"cache-control", b"no-cache"),
        ],
        vec![
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b"/index.html"),
            (b":authority", b"www.example.com"),
            (b"custom-key", b"custom-value"),
        ],
    ];
    for blocks in [plain, huffman] {
        let mut d = hpack::Decoder::new(HEADER_TABLE_SIZE);
        for (block, want) in blocks.iter().zip(&want) {
            let mut got: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            d.decode(block, |n, v| {
                got.push((n.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
            let want: Vec<_> = want.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
            assert_eq!(got, want);
        }
    }
}

/// RFC 7541 §4.4: an entry larger than the table empties it, and the table is then
/// really empty (its full size is available again).
#[test]
fn oversized_entry_empties_the_table() {
    let a = vec![b'a'; 2000];
    let b = vec![b'b'; 5000];
    let c = vec![b'c'; 100];
    let d = vec![b'd'; 2100];
    let blocks = [
        encode(&[Rep::Literal(0x40, Name::Lit(b"a"), &a, false)]),
        encode(&[Rep::Literal(0x40, Name::Lit(b"b"), &b, false)]),
        encode(&[
            Rep::Literal(0x40, Name::Lit(b"c"), &c, false),
            Rep::Literal(0x40, Name::Lit(b"d"), &d, true),
            Rep::Indexed(63),
            Rep::Indexed(62),
        ]),
    ];
    let mut ours = hpack::Decoder::new(HEADER_TABLE_SIZE);
    let mut fields = Vec::new();
    for block in &blocks {
        fields.clear();
        ours.decode(block, |n, v| {
            fields.push((n.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(fields[2], (b"c".to_vec(), c));
    assert_eq!(fields[3], (b"d".to_vec(), d));
    assert_eq!(ours.dynamic_len(), 2);
    let mut loona = loona_hpack::Decoder::new();
    let mut last = Vec::new();
    for block in &blocks {
        last = loona.decode(block).unwrap();
    }
    assert_eq!(last, fields);
}

/// Our decoder and loona-hpack agree on random block sequences: every representation,
/// static and dynamic indices (some out of range), Huffman or not, evictions, size updates.
#[test]
fn decoder_agrees_with_loona_hpack() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut agreed_ok, mut agreed_err) = (0, 0);
    for _connection in 0..1000 {
        let mut ours = hpack::Decoder::new(HEADER_TABLE_SIZE);
        let mut loona = loona_hpack::Decoder::new();
        loona.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        for _block in 0..20 {
            let mut block = Vec::new();
            if rnd() % 8 == 0 {
                let size = [0, 100, 1000, 4096][(rnd() % 4) as usize];
                hpack::encode_int(&mut block, size, 5, 0x20);
            }
            for _field in 0..1 + rnd() % 8 {
                let dynamic = ours.dynamic_len();
                let index = |r: u64| {
                    if r.is_multiple_of(64) {
                        62 + dynamic + (r % 3) as usize // sometimes past the table
                    } else if dynamic > 0 && r.is_multiple_of(2) {
                        62 + (r as usize / 2) % dynamic
                    } else {
                        1 + (r as usize / 2) % 61
                    }
                };
                let name_buf: Vec<u8> = (0..1 + rnd() % 10)
                    .map(|_| b'a' + (rnd() % 26) as u8)
                    .collect();
                let vlen = if rnd() % 20 == 0 {
                    1000 + rnd() % 3000
                } else {
                    rnd() % 40
                };
                let value: Vec<u8> = (0..vlen).map(|_| rnd() as u8).collect();
                let huffman = rnd() % 2 == 0;
                let kind = [0x40, 0x00, 0x10][(rnd() % 3) as usize];
                let rep = match rnd() % 3 {
                    0 => Rep::Indexed(index(rnd())),
                    1 => Rep::Literal(kind, Name::Idx(index(rnd())), &value, huffman),
                    _ => Rep::Literal(kind, Name::Lit(&name_buf), &value, huffman),
                };
                block.extend(encode(&[rep]));
            }
            let mut got = Vec::new();
            let r1 = ours.decode(&block, |n, v| {
                got.push((n.to_vec(), v.to_vec()));
                Ok(())
            });
            let r2 = loona.decode(&block);
            match (r1, r2) {
                (Ok(()), Ok(want)) => {
                    assert_eq!(got, want);
                    agreed_ok += 1;
                }
                (Err(_), Err(_)) => {
                    agreed_err += 1;
                    break; // both refuse: the connection would end
                }
                (r1, r2) => panic!("disagree: ours {r1:?}, loona {:?}", r2.map(|_| ())),
            }
        }
    }
    assert!(
        agreed_ok > 3000 && agreed_err > 10,
        "ok {agreed_ok}, errors {agreed_err}"
    );
}
