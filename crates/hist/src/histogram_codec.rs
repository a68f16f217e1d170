//! Serde for HDR histograms: the standard V2 compressed encoding, then base64 — the form
//! `HdrHistogram` tools in every language read (e.g. `HistogramLogProcessor`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hdrhistogram::serialization::{Deserializer as HdrDe, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{de, Deserialize, Deserializer, Serializer};

/// Encode a histogram as base64 of its HDR V2 compressed form.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .expect("serializing into a Vec cannot fail");
    STANDARD.encode(buf)
}

/// Most counts a decoded histogram may hold (8 bytes each): ours (3 significant digits, any
/// range of u64) hold at most 65,536; a damaged or hostile header could ask for gigabytes.
pub const MAX_COUNTS: u64 = 1 << 21;

/// V2 payload cookie, and the V2 compressed one, as hdrhistogram writes them (the base
/// cookies with 0x10 set; the base ones are read too).
const V2: u32 = 0x1c84_9313;
const V2_COMPRESSED: u32 = 0x1c84_9314;

/// The counts a V2 payload header asks for, computed as HdrHistogram sizes its array; an
/// error for a header no histogram has (hdrhistogram would allocate before it checks).
fn counts_asked(header: &[u8]) -> Result<u64, String> {
    let word = |i: usize| u32::from_be_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    let long = |i: usize| u64::from_be_bytes(header[i..i + 8].try_into().expect("8 bytes"));
    if header.len() < 32 || (word(0) | 0x10) != V2 {
        return Err("not an HDR V2 histogram".into());
    }
    let (digits, lowest, highest) = (word(12), long(16), long(24));
    if digits > 5 || lowest == 0 || highest < lowest.saturating_mul(2) {
        return Err(format!(
            "HDR header out of range: {digits} digits, values {lowest}..{highest}"
        ));
    }
    let single_unit = 2 * 10u64.pow(digits);
    let sub_bucket_count = single_unit.next_power_of_two();
    let unit_magnitude = 63 - lowest.leading_zeros() as u64;
    let mut smallest_untrackable = (sub_bucket_count as u128) << unit_magnitude;
    let mut buckets = 1u64;
    while smallest_untrackable <= highest as u128 {
        smallest_untrackable <<= 1;
        buckets += 1;
    }
    Ok((buckets + 1) * (sub_bucket_count / 2))
}

/// Refuse a histogram whose header asks for more than [`MAX_COUNTS`] counts, before
/// hdrhistogram allocates them.
fn check_size(raw: &[u8]) -> Result<(), String> {
    if raw.len() < 8 {
        return Err("histogram too short".into());
    }
    let cookie = u32::from_be_bytes(raw[..4].try_into().expect("4 bytes"));
    let mut header = Vec::with_capacity(40);
    if matches!(cookie, 0x1c84_9304 | V2_COMPRESSED) {
        use std::io::Read;
        flate2::read::ZlibDecoder::new(&raw[8..])
            .take(40)
            .read_to_end(&mut header)
            .map_err(|e| format!("histogram does not decompress: {e}"))?;
    } else {
        header.extend_from_slice(&raw[..raw.len().min(40)]);
    }
    let counts = counts_asked(&header)?;
    if counts > MAX_COUNTS {
        return Err(format!(
            "histogram asks for {counts} counts, more than {MAX_COUNTS}"
        ));
    }
    // hdrhistogram sizes its payload buffer by the header's payload length before it reads
    // a byte of it: a count is at most a 9-byte varint, so more than that is damage.
    let payload = u32::from_be_bytes(header[4..8].try_into().expect("4 bytes"));
    if u64::from(payload) > MAX_COUNTS * 9 {
        return Err(format!(
            "histogram payload of {payload} bytes is longer than {MAX_COUNTS} counts can be"
        ));
    }
    Ok(())
}

/// Decode what [`encode`] wrote (or any HDR V2 / V2-compressed histogram in base64), at most
/// [`MAX_COUNTS`] counts.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let raw = STANDARD
        .decode(text.trim())
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    check_size(&raw)?;
    let mut h: Histogram<u64> = HdrDe::new()
        .deserialize(&mut &raw[..])
        .map_err(|e| format!("histogram does not decode: {e:?}"))?;
    h.auto(true);
    Ok(h)
}

/// `#[serde(with = "histogram_codec")]` entry point.
pub fn serialize<S: Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode(h))
}

/// `#[serde(with = "histogram_codec")]` entry point.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
    let text = String::deserialize(d)?;
    decode(&text).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_histograms_fit_and_an_absurd_header_is_refused_before_allocating() {
        let mut h = crate::new_histogram();
        h.record(1).unwrap();
        h.record(u64::MAX / 4).unwrap();
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(back.len(), 2);
        // A V2 header asking for 5 digits over all of u64: ~ 8 million counts.
        let mut header = Vec::new();
        header.extend_from_slice(&V2.to_be_bytes());
        header.extend_from_slice(&0u32.to_be_bytes());
        header.extend_from_slice(&0u32.to_be_bytes());
        header.extend_from_slice(&5u32.to_be_bytes());
        header.extend_from_slice(&1u64.to_be_bytes());
        header.extend_from_slice(&u64::MAX.to_be_bytes());
        header.extend_from_slice(&1f64.to_bits().to_be_bytes());
        assert!(counts_asked(&header).unwrap() > MAX_COUNTS);
        let e = decode(&STANDARD.encode(&header)).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        // Ours: 3 digits over all of u64.
        header[12..16].copy_from_slice(&3u32.to_be_bytes());
        assert!(counts_asked(&header).unwrap() <= 65_536);
    }
}
