//! The wall clock as Unix seconds, and random tokens: what the aggregator, its bots, the demo
//! and `k8s` stamp seconds with and authenticate with (bearer tokens, run ids). Here, the
//! lowest crate they all reach that already reads the wall clock (the `Date` header) and the
//! system's randomness.

use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock as Unix seconds (0 before 1970).
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A new random token or id: 128 bits from /dev/urandom, as 32 hex digits.
pub fn random_hex() -> String {
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        // No /dev/urandom: time and pid are unique enough for an id, weak for a token.
        let seed = now_unix().to_bits() ^ u64::from(std::process::id()) << 32;
        b[..8].copy_from_slice(&seed.to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_32_hex_digits_and_differ() {
        let (a, b) = (super::random_hex(), super::random_hex());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }
}
