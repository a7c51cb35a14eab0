//! Body decompression (`compression` header, PROTOCOL.md 1.4).
//!
//! Celery's `compression='gzip'` sends header `compression: application/x-gzip`
//! with a **zlib** stream (RFC 1950) as the body; real gzip framing (RFC 1952) is
//! read too when the body starts with the gzip magic. flate2 does the inflating.

use std::io::Read;

use super::error::ProtocolError;

/// The `compression` header value Celery sends for `compression='gzip'`.
pub const GZIP_MIME: &str = "application/x-gzip";

/// Upper bound for a decompressed body, against decompression bombs.
const MAX_OUTPUT: u64 = 512 * 1024 * 1024;

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
                reason,
            })
        }
        other => Err(ProtocolError::UnsupportedCompression {
            compression: other.to_owned(),
        }),
    }
}

/// Inflate a zlib stream, or a gzip member when the data starts with `1f 8b`.
fn inflate_any(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let read = if data.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(data)
            .take(MAX_OUTPUT + 1)
            .read_to_end(&mut out)
    } else {
        flate2::read::ZlibDecoder::new(data)
            .take(MAX_OUTPUT + 1)
            .read_to_end(&mut out)
    };
    read.map_err(|error| error.to_string())?;
    if out.len() as u64 > MAX_OUTPUT {
        return Err(format!(
            "decompressed body is larger than {MAX_OUTPUT} bytes"
        ));
    }
    if data.is_empty() {
        return Err("empty compressed body".to_string());
    }
    Ok(out)
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
        assert!(err.to_string().contains("corrupt"), "{err}");
        let truncated = zlib(b"some body some body some body", 6);
        assert!(decompress(GZIP_MIME, &truncated[..truncated.len() / 2]).is_err());
        let err = decompress("application/x-bz2", b"BZh").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported compression \"application/x-bz2\""
        );
    }
}
