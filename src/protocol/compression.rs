//! Body decompression (`compression` header, PROTOCOL.md 1.4).
//!
//! Celery's `compression='gzip'` sends header `compression: application/x-gzip`
//! with a **zlib** stream (RFC 1950) as the body. This module holds a small,
//! self-contained DEFLATE decoder (RFC 1951) for that stream, which also reads
//! real gzip framing (RFC 1952) when the body starts with the gzip magic.

use super::error::ProtocolError;

/// The `compression` header value Celery sends for `compression='gzip'`.
pub const GZIP_MIME: &str = "application/x-gzip";

/// Upper bound for a decompressed body, against decompression bombs.
const MAX_OUTPUT: usize = 512 * 1024 * 1024;

/// Decompress a body according to its `compression` header.
///
/// `application/x-gzip`, `application/gzip`, `gzip`, `zlib` and
/// `application/x-zlib` are read (zlib stream, or gzip framing if present);
/// anything else is [`ProtocolError::UnsupportedCompression`].
pub fn decompress(compression: &str, body: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    match compression {
        GZIP_MIME | "application/gzip" | "gzip" | "zlib" | "application/x-zlib" => {
            inflate_any(body).map_err(|reason| ProtocolError::Decompression {
                compression: compression.to_owned(),
                reason: reason.to_owned(),
            })
        }
        other => Err(ProtocolError::UnsupportedCompression {
            compression: other.to_owned(),
        }),
    }
}

/// Inflate a zlib stream, or a gzip member when the data starts with `1f 8b`.
fn inflate_any(data: &[u8]) -> Result<Vec<u8>, &'static str> {
    if data.starts_with(&[0x1f, 0x8b]) {
        inflate_gzip(data)
    } else {
        inflate_zlib(data)
    }
}

fn inflate_zlib(data: &[u8]) -> Result<Vec<u8>, &'static str> {
    let (&cmf, rest) = data.split_first().ok_or("empty zlib stream")?;
    let (&flg, rest) = rest.split_first().ok_or("truncated zlib header")?;
    if cmf & 0x0f != 8 {
        return Err("zlib stream does not use the deflate method");
    }
    if (u16::from(cmf) * 256 + u16::from(flg)) % 31 != 0 {
        return Err("zlib header checksum mismatch");
    }
    if flg & 0x20 != 0 {
        return Err("zlib preset dictionaries are not supported");
    }
    let (out, used) = inflate(rest)?;
    let trailer = rest.get(used..used + 4).ok_or("missing adler-32 trailer")?;
    let expected = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if adler32(&out) != expected {
        return Err("adler-32 checksum mismatch");
    }
    Ok(out)
}

fn inflate_gzip(data: &[u8]) -> Result<Vec<u8>, &'static str> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if data.len() < 18 || data[2] != 8 {
        return Err("invalid gzip header");
    }
    let flags = data[3];
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let len = data.get(pos..pos + 2).ok_or("truncated gzip header")?;
        pos += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let end = data
                .get(pos..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
                .ok_or("truncated gzip header")?;
            pos += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    let (out, _) = inflate(data.get(pos..).ok_or("truncated gzip header")?)?;
    Ok(out)
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// LSB-first bit reader over a byte slice.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    count: u32,
}

impl Bits<'_> {
    fn need(&mut self, n: u32) -> Result<u32, &'static str> {
        while self.count < n {
            let byte = *self.data.get(self.pos).ok_or("truncated deflate stream")?;
            self.pos += 1;
            self.buf |= u64::from(byte) << self.count;
            self.count += 8;
        }
        let value = (self.buf & ((1u64 << n) - 1)) as u32;
        self.buf >>= n;
        self.count -= n;
        Ok(value)
    }

    fn align(&mut self) {
        self.buf = 0;
        self.count = 0;
    }
}

/// A canonical Huffman code: number of codes per length, symbols by code.
struct Huffman {
    counts: [u16; 16],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Self, &'static str> {
        let mut counts = [0u16; 16];
        for &len in lengths {
            counts[usize::from(len)] += 1;
        }
        counts[0] = 0;
        let mut left: i32 = 1;
        for &count in &counts[1..] {
            left = left * 2 - i32::from(count);
            if left < 0 {
                return Err("over-subscribed huffman code");
            }
        }
        let mut offsets = [0u16; 16];
        for len in 1..15 {
            offsets[len + 1] = offsets[len] + counts[len];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                let slot = &mut offsets[usize::from(len)];
                symbols[usize::from(*slot)] = symbol as u16;
                *slot += 1;
            }
        }
        Ok(Self { counts, symbols })
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<u16, &'static str> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= bits.need(1)? as i32;
            let count = i32::from(self.counts[len]);
            if code - count < first {
                let at = (index + (code - first)) as usize;
                return self.symbols.get(at).copied().ok_or("invalid huffman code");
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err("invalid huffman code")
    }
}

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Inflate a raw DEFLATE stream. Returns the output and the number of input
/// bytes consumed (up to the end of the final block, rounded up to a byte).
fn inflate(data: &[u8]) -> Result<(Vec<u8>, usize), &'static str> {
    let mut bits = Bits {
        data,
        pos: 0,
        buf: 0,
        count: 0,
    };
    let mut out = Vec::with_capacity(data.len().saturating_mul(4));
    loop {
        let last = bits.need(1)? == 1;
        match bits.need(2)? {
            0 => stored_block(&mut bits, &mut out)?,
            1 => {
                let mut lengths = [0u8; 288];
                lengths[..144].fill(8);
                lengths[144..256].fill(9);
                lengths[256..280].fill(7);
                lengths[280..].fill(8);
                let lit = Huffman::new(&lengths)?;
                let dist = Huffman::new(&[5u8; 30])?;
                codes_block(&mut bits, &mut out, &lit, &dist)?;
            }
            2 => {
                let (lit, dist) = dynamic_tables(&mut bits)?;
                codes_block(&mut bits, &mut out, &lit, &dist)?;
            }
            _ => return Err("invalid deflate block type"),
        }
        if last {
            // Bytes still buffered in the bit reader were not consumed.
            return Ok((out, bits.pos - (bits.count / 8) as usize));
        }
    }
}

fn stored_block(bits: &mut Bits<'_>, out: &mut Vec<u8>) -> Result<(), &'static str> {
    bits.align();
    let header = bits
        .data
        .get(bits.pos..bits.pos + 4)
        .ok_or("truncated stored block")?;
    let len = u16::from_le_bytes([header[0], header[1]]);
    let nlen = u16::from_le_bytes([header[2], header[3]]);
    if len != !nlen {
        return Err("stored block length mismatch");
    }
    bits.pos += 4;
    let end = bits.pos + usize::from(len);
    let chunk = bits
        .data
        .get(bits.pos..end)
        .ok_or("truncated stored block")?;
    if out.len() + chunk.len() > MAX_OUTPUT {
        return Err("decompressed body too large");
    }
    out.extend_from_slice(chunk);
    bits.pos = end;
    Ok(())
}

fn dynamic_tables(bits: &mut Bits<'_>) -> Result<(Huffman, Huffman), &'static str> {
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    let nlen = bits.need(5)? as usize + 257;
    let ndist = bits.need(5)? as usize + 1;
    let ncode = bits.need(4)? as usize + 4;
    if nlen > 286 || ndist > 30 {
        return Err("bad dynamic block counts");
    }
    let mut code_lengths = [0u8; 19];
    for &index in &ORDER[..ncode] {
        code_lengths[index] = bits.need(3)? as u8;
    }
    let code = Huffman::new(&code_lengths)?;
    let mut lengths = vec![0u8; nlen + ndist];
    let mut index = 0;
    while index < nlen + ndist {
        let symbol = code.decode(bits)?;
        let (value, repeat) = match symbol {
            0..=15 => (symbol as u8, 1),
            16 => {
                let previous = *lengths
                    .get(index.wrapping_sub(1))
                    .ok_or("repeat with no previous length")?;
                (previous, 3 + bits.need(2)? as usize)
            }
            17 => (0, 3 + bits.need(3)? as usize),
            _ => (0, 11 + bits.need(7)? as usize),
        };
        if index + repeat > lengths.len() {
            return Err("too many code lengths");
        }
        lengths[index..index + repeat].fill(value);
        index += repeat;
    }
    if lengths[256] == 0 {
        return Err("no end-of-block code");
    }
    Ok((
        Huffman::new(&lengths[..nlen])?,
        Huffman::new(&lengths[nlen..])?,
    ))
}

fn codes_block(
    bits: &mut Bits<'_>,
    out: &mut Vec<u8>,
    lit: &Huffman,
    dist: &Huffman,
) -> Result<(), &'static str> {
    loop {
        let symbol = usize::from(lit.decode(bits)?);
        match symbol {
            0..=255 => out.push(symbol as u8),
            256 => return Ok(()),
            _ => {
                let at = symbol - 257;
                let base = *LEN_BASE.get(at).ok_or("invalid length symbol")?;
                let len = usize::from(base) + bits.need(u32::from(LEN_EXTRA[at]))? as usize;
                let dsym = usize::from(dist.decode(bits)?);
                let dbase = *DIST_BASE.get(dsym).ok_or("invalid distance symbol")?;
                let distance =
                    usize::from(dbase) + bits.need(u32::from(DIST_EXTRA[dsym]))? as usize;
                if distance > out.len() {
                    return Err("distance too far back");
                }
                if out.len() + len > MAX_OUTPUT {
                    return Err("decompressed body too large");
                }
                let start = out.len() - distance;
                for offset in 0..len {
                    out.push(out[start + offset]);
                }
            }
        }
        if out.len() > MAX_OUTPUT {
            return Err("decompressed body too large");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(data: &[u8], level: u32) -> Vec<u8> {
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level));
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn sample_inputs() -> Vec<Vec<u8>> {
        let mut pseudo_random = Vec::new();
        let mut state: u32 = 12345;
        for _ in 0..100_000 {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            pseudo_random.push((state >> 16) as u8 % 17);
        }
        vec![
            Vec::new(),
            b"a".to_vec(),
            br#"[[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#
                .to_vec(),
            b"abcabcabcabcabcabcabcabc".repeat(1000),
            pseudo_random,
        ]
    }

    #[test]
    fn inflates_what_flate2_compresses_at_every_level() {
        for input in sample_inputs() {
            for level in [0, 1, 6, 9] {
                let compressed = zlib(&input, level);
                let out = decompress(GZIP_MIME, &compressed).unwrap();
                assert_eq!(out, input, "level {level}, {} bytes", input.len());
            }
        }
    }

    #[test]
    fn inflates_gzip_framing() {
        let input = b"hello hello hello gzip".repeat(50);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&input).unwrap();
        let compressed = encoder.finish().unwrap();
        assert_eq!(decompress(GZIP_MIME, &compressed).unwrap(), input);
    }

    #[test]
    fn rejects_garbage_and_corruption() {
        assert!(decompress(GZIP_MIME, b"").is_err());
        assert!(decompress(GZIP_MIME, b"not zlib at all").is_err());
        let mut compressed = zlib(b"some body some body some body", 6);
        let last = compressed.len() - 1;
        compressed[last] ^= 0xff;
        let err = decompress(GZIP_MIME, &compressed).unwrap_err();
        assert!(err.to_string().contains("adler-32"), "{err}");
        let truncated = zlib(b"some body some body some body", 6);
        assert!(decompress(GZIP_MIME, &truncated[..truncated.len() / 2]).is_err());
        let err = decompress("application/x-bz2", b"BZh").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported compression \"application/x-bz2\""
        );
    }
}
