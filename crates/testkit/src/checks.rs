//! Checks that run only under a condition (a browser installed, a load generator that kept its
//! schedule): each says on stderr whether it ran and, when `SCALETEST_CHECKS` names a file,
//! appends one line there (`RAN name` or `SKIPPED name: why`). `.ci/run` sets it, prints the
//! file after the tests and fails when a check never ran, so CI shows every such check ran.

use std::io::Write;

/// The check `name` ran.
pub fn ran(name: &str) {
    record(&format!("RAN {name}"));
}

/// The check `name` did not run, because `why`.
pub fn skipped(name: &str, why: &str) {
    record(&format!("SKIPPED {name}: {why}"));
}

fn record(line: &str) {
    eprintln!("{line}");
    let Some(path) = std::env::var_os("SCALETEST_CHECKS") else {
        return;
    };
    // One write of one line with O_APPEND: lines of parallel tests do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        panic!("cannot record a conditional check in {path:?}: {e}");
    }
}
