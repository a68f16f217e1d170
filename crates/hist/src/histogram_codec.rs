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

/// Decode what [`encode`] wrote (or any HDR V2 / V2-compressed histogram in base64).
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let raw = STANDARD
        .decode(text.trim())
        .map_err(|e| format!("histogram is not base64: {e}"))?;
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
