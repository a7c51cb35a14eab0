//! Decoding a task's arguments from an `application/x-bincode` body without trusting it.
//!
//! bincode 2 allocates what a length prefix declares before it reads the bytes, unless its
//! configuration carries a limit: then every declared allocation is claimed against the
//! limit first, and a claim past it fails with `LimitExceeded` before anything is
//! allocated. The limit is a const generic in bincode, so the runtime limit is rounded up
//! to a power of two and dispatched to one of a fixed set of instantiations.

use serde::de::DeserializeOwned;

/// The smallest limit used (a limit below it is rounded up to it): 4 KiB.
const MIN_LIMIT_SHIFT: u32 = 12;
/// The largest limit used: 1 TiB, far above any sane `max_message_size`.
const MAX_LIMIT_SHIFT: u32 = 40;

/// The power of two the bytes a decoded value may claim are rounded up to, for `limit`.
fn limit_shift(limit: usize) -> u32 {
    let rounded = limit
        .max(1)
        .checked_next_power_of_two()
        .unwrap_or(1 << MAX_LIMIT_SHIFT);
    rounded
        .trailing_zeros()
        .clamp(MIN_LIMIT_SHIFT, MAX_LIMIT_SHIFT)
}

/// The limit, in bytes, that `decode` applies for `limit` (rounded up to a power of two).
#[cfg(test)]
fn effective_limit(limit: usize) -> u64 {
    1u64 << limit_shift(limit)
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T, String> {
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (value, read) =
        bincode::serde::decode_from_slice::<T, _>(bytes, config).map_err(|error| match error {
            bincode::error::DecodeError::LimitExceeded => format!(
                "they declare more than the limit of {LIMIT} bytes ({} bytes received)",
                bytes.len()
            ),
            other => other.to_string(),
        })?;
    if read != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the arguments ({} bytes received)",
            bytes.len() - read,
            bytes.len()
        ));
    }
    Ok(value)
}

/// Decodes `bytes` as bincode 2 (standard configuration) into `T`. Whatever the bytes
/// declare, the value may claim at most `limit` bytes rounded up to a power of two (at
/// least 4 KiB), and every byte must be used: trailing bytes are refused.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, String> {
    macro_rules! dispatch {
        ($($shift:literal)*) => {
            match limit_shift(limit) {
                $($shift => decode_limited::<T, { 1usize << $shift }>(bytes),)*
                _ => decode_limited::<T, { 1usize << MAX_LIMIT_SHIFT }>(bytes),
            }
        };
    }
    dispatch!(12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
    }

    #[test]
    fn rounds_the_limit_up_to_a_power_of_two() {
        assert_eq!(effective_limit(0), 4096);
        assert_eq!(effective_limit(4096), 4096);
        assert_eq!(effective_limit(4097), 8192);
        assert_eq!(effective_limit(16 * 1024 * 1024), 16 * 1024 * 1024);
        assert_eq!(effective_limit(usize::MAX), 1 << 40);
    }

    #[test]
    fn decodes_what_fits() {
        let bytes = encode(&(2i64, "x".to_string(), vec![1u32, 2, 3]));
        let value: (i64, String, Vec<u32>) = decode(&bytes, 1024).unwrap();
        assert_eq!(value, (2, "x".to_string(), vec![1, 2, 3]));
    }

    #[test]
    fn refuses_a_declared_length_past_the_limit_without_allocating_it() {
        // A string that declares 2^40 bytes: 0xFD then a little-endian u64.
        let mut hostile = vec![0xFD];
        hostile.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let error = decode::<String>(&hostile, 16 * 1024 * 1024).unwrap_err();
        assert!(
            error.contains("more than the limit of 16777216 bytes"),
            "{error}"
        );
        // Within the limit but beyond the body: an error, never a 1 MiB read of nothing.
        let mut short = vec![0xFD];
        short.extend_from_slice(&(1u64 << 20).to_le_bytes());
        assert!(decode::<String>(&short, 16 * 1024 * 1024).is_err());
        // A vector of a billion u64s.
        let mut vector = vec![0xFD];
        vector.extend_from_slice(&(1u64 << 30).to_le_bytes());
        assert!(decode::<Vec<u64>>(&vector, 16 * 1024 * 1024).is_err());
    }

    #[test]
    fn refuses_trailing_bytes() {
        let mut bytes = encode(&7u32);
        bytes.push(0);
        let error = decode::<u32>(&bytes, 1024).unwrap_err();
        assert!(error.contains("1 trailing bytes"), "{error}");
    }
}
