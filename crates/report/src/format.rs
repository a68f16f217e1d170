//! Number formatting in autocannon's style.

/// Milliseconds with at most two decimals and no trailing zeros: `2 ms`, `0.64 ms`.
pub fn ms(v: f64) -> String {
    format!("{} ms", trim(v, 2))
}

/// A number with at most `decimals` decimals, trailing zeros removed.
pub fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Bytes in SI units with three significant digits: `1.47 MB`, `471 kB`, `13 B`.
pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = v;
    let mut u = 0;
    while v >= 999.5 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    let decimals = if v >= 100.0 || u == 0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{} {}", trim(v, decimals), UNITS[u])
}

/// An integer with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A Unix time as `2026-11-29 04:00:00 UTC` (no time-zone database needed, so reports are the
/// same wherever they are rendered).
pub fn utc(unix: f64) -> String {
    let ((year, month, day), (h, m, sec)) = civil(unix);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{sec:02} UTC")
}

/// A Unix time as RFC 3339 in UTC, whole seconds (`2026-11-29T04:00:00Z`), as Kubernetes
/// writes timestamps.
pub fn rfc3339(unix: f64) -> String {
    let ((year, month, day), (h, m, sec)) = civil(unix);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}Z")
}

/// (year, month, day) and (hour, minute, second) of a Unix time, UTC.
fn civil(unix: f64) -> ((i64, i64, i64), (i64, i64, i64)) {
    let secs = unix.max(0.0).floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date, in 400-year eras starting on 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    ((year, month, day), (rem / 3600, rem / 60 % 60, rem % 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_autocannon() {
        assert_eq!(ms(2.0), "2 ms");
        assert_eq!(ms(0.6449), "0.64 ms");
        assert_eq!(ms(47.07), "47.07 ms");
        assert_eq!(bytes(1_470_000.0), "1.47 MB");
        assert_eq!(bytes(471_000.0), "471 kB");
        assert_eq!(bytes(13.0), "13 B");
        assert_eq!(bytes(116_200_000.0), "116 MB");
        assert_eq!(count(803_214), "803,214");
        assert_eq!(count(12), "12");
    }

    #[test]
    fn utc_dates_match_known_days() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000.5), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(4_107_542_399.0), "2100-02-28 23:59:59 UTC");
    }
}
