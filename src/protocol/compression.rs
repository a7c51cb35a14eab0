//! Body decompression (`compression` header, docs/wire-protocol.md §1.4).
//!
//! Celery's `compression='gzip'` sends header `compression: application/x-gzip`
//! with a **zlib** stream (RFC 1950) as the body; real gzip framing (RFC 1952) is
//! read too when the body starts with the gzip magic. flate2 does the inflating.

use std::io::Read;

use super::error::ProtocolError;

/// The `compression` header value Celery sends for `compression='gzip'`.
pub const GZIP_MIME: &str = "application/x-gzip";

/// Decompress a body according to its `compression` header, inflating at most `limit`
/// bytes: a body that would inflate further is refused as soon as the limit is passed,
/// so a compression bomb costs at most `limit` bytes (plus the inflater's own state).
///
/// `application/x-gzip`, `application/gzip`, `gzip`, `zlib` and
/// `application/x-zlib` are read (zlib stream, or gzip framing if present);
/// anything else is [`ProtocolError::UnsupportedCompression`].
pub fn decompress(compression: &str, body: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
    match compression {
        GZIP_MIME | "application/gzip" | "gzip" | "zlib" | "application/x-zlib" => {
            inflate_any(body, limit).map_err(|reason| ProtocolError::Decompression {
                compression: compression.to_owned(),
                reason,
            })
        }
        other => Err(ProtocolError::UnsupportedCompression {
            compression: other.to_owned(),
        }),
    }
}

/// Inflate a zlib stream, or a gzip member when the data starts with `1f 8b`, reading at
/// most `limit + 1` bytes of output (one more than allowed tells that the limit was passed).
fn inflate_any(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    if data.is_empty() {
        return Err("empty compressed body".to_string());
    }
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    // Never reserve from what the stream claims: grow as real output arrives.
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    let read = if data.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(data)
            .take(cap)
            .read_to_end(&mut out)
    } else {
        flate2::read::ZlibDecoder::new(data)
            .take(cap)
            .read_to_end(&mut out)
    };
    if out.len() > limit {
        return Err(format!(
            "it inflates to more than the size limit of {limit} bytes ({} bytes compressed)",
            data.len()
        ));
    }
    read.map_err(|error| error.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LIMIT: usize = 1024 * 1024;

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
                let out = decompress(GZIP_MIME, &compressed, LIMIT).unwrap();
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
        assert_eq!(decompress(GZIP_MIME, &compressed, LIMIT).unwrap(), input);
    }

    #[test]
    fn rejects_garbage_and_corruption() {
        assert!(decompress(GZIP_MIME, b"", LIMIT).is_err());
        assert!(decompress(GZIP_MIME, b"not zlib at all", LIMIT).is_err());
        let mut compressed = zlib(b"some body some body some body", 6);
        let last = compressed.len() - 1;
        compressed[last] ^= 0xff;
        let err = decompress(GZIP_MIME, &compressed, LIMIT).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        let truncated = zlib(b"some body some body some body", 6);
        assert!(decompress(GZIP_MIME, &truncated[..truncated.len() / 2], LIMIT).is_err());
        let err = decompress("application/x-bz2", b"BZh", LIMIT).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported compression \"application/x-bz2\""
        );
    }

    #[test]
    fn stops_inflating_past_the_limit() {
        // 64 MiB of zeros compress to about 64 KiB: a bomb against a 1 MiB limit.
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![0u8; 1024 * 1024];
        for _ in 0..64 {
            encoder.write_all(&chunk).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 200 * 1024, "{} bytes", bomb.len());
        let err = decompress(GZIP_MIME, &bomb, LIMIT).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("more than the size limit of 1048576 bytes"),
            "{text}"
        );
        // Exactly at the limit is fine.
        let exact = zlib(&vec![7u8; LIMIT], 9);
        assert_eq!(decompress(GZIP_MIME, &exact, LIMIT).unwrap().len(), LIMIT);
        let over = zlib(&vec![7u8; LIMIT + 1], 9);
        assert!(decompress(GZIP_MIME, &over, LIMIT).is_err());
    }
}
