//! Just enough HPACK (RFC 7541) for this rewrite: a complete decoder, and an encoder that only
//! writes literals without indexing.
//! It serves `AuthorityFix` only; nothing else should speak HPACK through it.

use std::collections::VecDeque;
use std::io;

use httlib_huffman::DecoderSpeed;

/// A decoding failure: the block's own, or one returned by the callback.
#[derive(Debug)]
pub enum Error {
    Hpack(&'static str),
    Emit(io::Error),
}

fn err<T>(msg: &'static str) -> Result<T, Error> {
    Err(Error::Hpack(msg))
}

/// The static table (RFC 7541 Appendix A); index 1 is `STATIC[0]`.
pub const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Per-entry overhead in the table size (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// One connection's decoding context: the dynamic table the client's encoder mirrors.
pub struct Decoder {
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max_size: usize,
    /// The protocol limit (SETTINGS_HEADER_TABLE_SIZE) on `max_size`.
    limit: usize,
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Decoder {
    pub fn new(limit: usize) -> Self {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    #[cfg(test)]
    pub fn dynamic_len(&self) -> usize {
        self.table.len()
    }

    /// Decodes one complete header block, calling `emit(name, value)` for each field in
    /// order. After an error the context is unusable (the connection must end).
    pub fn decode(
        &mut self,
        block: &[u8],
        mut emit: impl FnMut(&[u8], &[u8]) -> io::Result<()>,
    ) -> Result<(), Error> {
        let mut pos = 0;
        let mut may_resize = true;
        while let Some(&first) = block.get(pos) {
            if first & 0x80 != 0 {
                // Indexed field.
                let index = decode_int(block, &mut pos, 7)?;
                let (name, value) = self.get(index)?;
                emit(name, value).map_err(Error::Emit)?;
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update: only at the start of a block.
                if !may_resize {
                    return err("table size update after a header field");
                }
                let size = decode_int(block, &mut pos, 5)?;
                if size > self.limit {
                    return err("table size update over SETTINGS_HEADER_TABLE_SIZE");
                }
                self.max_size = size;
                self.evict(0);
                continue;
            } else {
                // Literal: with incremental indexing (01), never indexed (0001) or
                // without indexing (0000).
                let indexing = first & 0xc0 == 0x40;
                let index = decode_int(block, &mut pos, if indexing { 6 } else { 4 })?;
                let Decoder {
                    table,
                    name_buf,
                    value_buf,
                    ..
                } = self;
                let name: &[u8] = if index == 0 {
                    read_string(block, &mut pos, name_buf)?
                } else {
                    lookup(table, index)?.0
                };
                let value = read_string(block, &mut pos, value_buf)?;
                emit(name, value).map_err(Error::Emit)?;
                if indexing {
                    let entry = (name.to_vec(), value.to_vec());
                    self.insert(entry);
                }
            }
            may_resize = false;
        }
        Ok(())
    }

    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), Error> {
        lookup(&self.table, index)
    }

    fn insert(&mut self, entry: (Vec<u8>, Vec<u8>)) {
        let size = entry.0.len() + entry.1.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            // RFC 7541 §4.4: the table empties, the entry is not added.
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.table.push_front(entry);
    }

    /// Evicts the oldest entries until `room` more bytes fit within `max_size`.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            let Some((n, v)) = self.table.pop_back() else {
                self.size = 0;
                return;
            };
            self.size -= n.len() + v.len() + ENTRY_OVERHEAD;
        }
    }
}

fn lookup(table: &VecDeque<(Vec<u8>, Vec<u8>)>, index: usize) -> Result<(&[u8], &[u8]), Error> {
    match index {
        0 => err("header index 0"),
        1..=61 => Ok(STATIC[index - 1]),
        _ => match table.get(index - 62) {
            Some((n, v)) => Ok((n, v)),
            None => err("header index past the dynamic table"),
        },
    }
}

/// Decodes an integer with an N-bit prefix (RFC 7541 §5.1) at `block[*pos]`.
fn decode_int(block: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, Error> {
    let mask = (1usize << prefix) - 1;
    let Some(&first) = block.get(*pos) else {
        return err("truncated integer");
    };
    *pos += 1;
    let mut value = usize::from(first) & mask;
    if value < mask {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let Some(&b) = block.get(*pos) else {
            return err("truncated integer");
        };
        *pos += 1;
        if shift > 21 {
            return err("integer too large");
        }
        value += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// Reads a string literal (RFC 7541 §5.2) at `block[*pos]`: a slice of `block`, or of
/// `scratch` when Huffman-coded.
fn read_string<'a>(
    block: &'a [u8],
    pos: &mut usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], Error> {
    let huffman = block.get(*pos).is_some_and(|b| b & 0x80 != 0);
    let len = decode_int(block, pos, 7)?;
    if len > block.len() - *pos {
        return err("truncated string");
    }
    let raw = &block[*pos..*pos + len];
    *pos += len;
    if !huffman {
        return Ok(raw);
    }
    scratch.clear();
    if httlib_huffman::decode(raw, scratch, DecoderSpeed::FiveBits).is_err() {
        return err("bad Huffman string");
    }
    Ok(scratch)
}

/// Appends an integer with an N-bit prefix, the prefix's high bits being `flags`.
pub fn encode_int(dst: &mut Vec<u8>, mut value: usize, prefix: u8, flags: u8) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        dst.push(flags | value as u8);
        return;
    }
    dst.push(flags | mask as u8);
    value -= mask;
    while value >= 0x80 {
        dst.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    dst.push(value as u8);
}

/// Appends a field as a literal without indexing (RFC 7541 §6.2.2): the name by its
/// static-table index when it has one, strings as raw octets.
pub fn encode_literal(dst: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match STATIC.iter().position(|(n, _)| *n == name) {
        Some(i) => encode_int(dst, i + 1, 4, 0x00),
        None => {
            dst.push(0x00);
            encode_int(dst, name.len(), 7, 0x00);
            dst.extend_from_slice(name);
        }
    }
    encode_int(dst, value.len(), 7, 0x00);
    dst.extend_from_slice(value);
}
