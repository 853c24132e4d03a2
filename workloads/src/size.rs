//! Byte sizes on the command line: `4096`, `16k`, `1m` (binary multiples, as filebench's
//! `16k` and `1m`).

/// Parses a size in bytes with an optional `k`/`m`/`g` suffix (×2^10, 2^20, 2^30,
/// case-insensitive, an optional trailing `b`).
///
/// # Errors
/// A message naming the bad input for an empty string, a non-number, or an overflow.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 4096, 16k, 1m)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Formats `bytes` in the shortest exact form [`parse_size`] reads back (`16k`, `1m`).
pub fn format_size(bytes: u64) -> String {
    for (shift, suffix) in [(30, "g"), (20, "m"), (10, "k")] {
        if bytes >= 1 << shift && bytes & ((1u64 << shift) - 1) == 0 {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_binary_multiples() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16k"), Ok(16 * 1024));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        assert_eq!(parse_size(" 10kb "), Ok(10 * 1024));
    }

    #[test]
    fn garbage_and_overflow_are_rejected() {
        assert!(parse_size("").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("12q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999g").is_err());
    }

    #[test]
    fn formatting_round_trips() {
        for n in [0, 1, 1000, 1024, 10 * 1024, 3 << 20, (1 << 20) + 1] {
            assert_eq!(parse_size(&format_size(n)), Ok(n));
        }
        assert_eq!(format_size(16 * 1024), "16k");
    }
}
