//! Run files come from outside (other machines, other versions, hand edits): whatever the bytes,
//! `report::RunFile::from_json` gives a run or an error, and never panics. Here rather than in
//! `report` so that the seed file is built only from public types.

use base64::Engine;
use proptest::collection::vec;
use proptest::prelude::*;
use report::RunFile;

/// A valid version-2 run file with one interval.
fn seed() -> serde_json::Value {
    let snap = serde_json::to_value(hist::Snapshot::default()).expect("a snapshot");
    serde_json::json!({
        "version": report::RUNFILE_VERSION,
        "tool": "test",
        "started_unix": 0.0,
        "info": serde_json::to_value(report::RunInfo::default()).expect("info"),
        "elapsed_s": 1.0,
        "interrupted": false,
        "peak_lanes": 1,
        "in_flight_at_end": 0,
        "total": snap,
        "series": [],
        "intervals": [snap],
    })
}

#[test]
fn the_seed_is_a_run_file() {
    let text = seed().to_string();
    assert!(RunFile::from_json("seed", &text).is_ok());
}

proptest! {
    #[test]
    fn any_bytes_give_a_run_or_an_error(bytes in vec(any::<u8>(), 0..4096)) {
        let _ = RunFile::from_json("f", &String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn a_damaged_run_file_gives_a_run_or_an_error(
        flips in vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut text = seed().to_string().into_bytes();
        for (at, b) in flips {
            let i = at % text.len();
            text[i] = b;
        }
        text.truncate(cut % (text.len() + 1) + 1);
        let _ = RunFile::from_json("f", &String::from_utf8_lossy(&text));
    }

    #[test]
    fn a_damaged_histogram_gives_a_run_or_an_error(
        flips in vec((any::<usize>(), any::<u8>()), 1..8),
        extra in vec(any::<u8>(), 0..64),
    ) {
        let mut v = seed();
        let encoded = v["total"]["latency"].as_str().expect("a base64 histogram").to_string();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut raw = b64.decode(&encoded).expect("base64");
        for (at, b) in flips {
            let i = at % raw.len();
            raw[i] = b;
        }
        raw.extend_from_slice(&extra);
        v["total"]["latency"] = serde_json::Value::String(b64.encode(&raw));
        let _ = RunFile::from_json("f", &v.to_string());
    }
}
