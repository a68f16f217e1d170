//! What Prometheus computes from what it scraped, as ClusterLoader2's queries ask it to:
//! `histogram_quantile` (linear interpolation within the bucket the rank falls in, the lowest
//! bucket starting at 0, the +Inf bucket answered with the highest finite bound), and
//! `quantile_over_time`'s quantile of several values (linear interpolation between the two
//! nearest ranks). Copied from Prometheus 2.x's `promql/quantile.go`.

/// The `q` quantile of a histogram given as (upper bound, cumulative count) pairs sorted by
/// bound, the last +Inf; None with no observations or no +Inf bucket.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let n = buckets.len();
    if n < 2 || buckets[n - 1].0 != f64::INFINITY {
        return None;
    }
    // Counts can dip through rounding in the server's float sums; Prometheus evens them out.
    let mut b: Vec<(f64, f64)> = buckets.to_vec();
    for i in 1..n {
        b[i].1 = b[i].1.max(b[i - 1].1);
    }
    let observations = b[n - 1].1;
    if observations <= 0.0 {
        return None;
    }
    let mut rank = q.clamp(0.0, 1.0) * observations;
    let i = b[..n - 1]
        .iter()
        .position(|&(_, c)| c >= rank)
        .unwrap_or(n - 1);
    if i == n - 1 {
        return Some(b[n - 2].0);
    }
    if i == 0 && b[0].0 <= 0.0 {
        return Some(b[0].0);
    }
    let (mut start, end, mut count) = (0.0, b[i].0, b[i].1);
    if i > 0 {
        start = b[i - 1].0;
        count -= b[i - 1].1;
        rank -= b[i - 1].1;
    }
    Some(start + (end - start) * (rank / count))
}

/// The `q` quantile of `values` (any order), as `quantile_over_time` computes it; None when
/// empty.
pub fn quantile(q: f64, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let w = rank - lo as f64;
    Some(v[lo] * (1.0 - w) + v[hi] * w)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn a_quantile_interpolates_within_its_bucket() {
        // 10 in (0.025, 0.05]: the median is halfway through that bucket.
        let b = [
            (0.005, 0.0),
            (0.025, 0.0),
            (0.05, 10.0),
            (0.1, 10.0),
            (INF, 10.0),
        ];
        let near = |got: Option<f64>, want: f64| (got.unwrap() - want).abs() < 1e-12;
        assert!(near(histogram_quantile(0.5, &b), 0.0375));
        assert!(near(histogram_quantile(0.99, &b), 0.04975));
        // The lowest bucket starts at 0.
        let b = [(0.005, 4.0), (INF, 4.0)];
        assert_eq!(histogram_quantile(0.5, &b), Some(0.0025));
        // Past the highest finite bound: that bound.
        let b = [(0.005, 0.0), (60.0, 1.0), (INF, 100.0)];
        assert_eq!(histogram_quantile(0.5, &b), Some(60.0));
        // A bound of 0 (API Priority and Fairness' waits): 0 for a rank there.
        let b = [(0.0, 7.0), (0.005, 7.0), (INF, 7.0)];
        assert_eq!(histogram_quantile(0.99, &b), Some(0.0));
        assert_eq!(histogram_quantile(0.5, &[(1.0, 0.0), (INF, 0.0)]), None);
        assert_eq!(histogram_quantile(0.5, &[(1.0, 3.0)]), None);
    }

    #[test]
    fn quantile_over_values_interpolates_between_ranks() {
        assert_eq!(quantile(0.5, &[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(quantile(0.99, &[1.0]), Some(1.0));
        assert!((quantile(0.99, &[0.0, 1.0]).unwrap() - 0.99).abs() < 1e-12);
        assert_eq!(quantile(0.99, &[]), None);
    }
}
