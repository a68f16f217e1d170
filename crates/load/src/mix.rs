//! The mix of a run's requests: which request each send is, and the name its figures are
//! kept under.
//!
//! Weights are walked in a fixed order over the run's global send sequence: every cycle of
//! Σweight sends holds each request exactly `weight` times, spread evenly (request i's k-th
//! send of the cycle sits at (k + ½)·cycle/weight; equal weights are plain round-robin). Names: a request's own (`# name:`, JSON
//! lines' `name`) or, when others are named, its method and path; past `max_names` distinct
//! names the rest are counted as [`OTHER`], so memory stays bounded whatever the targets file;
//! a name longer than `hist::record::MAX_NAME_BYTES` is cut.

/// Longest cycle of the weighted order (Σweight after dividing by the weights' common factor).
pub const MAX_CYCLE: u64 = 1_000_000;

/// Names kept apart unless the spec says otherwise.
pub const DEFAULT_MAX_NAMES: u64 = 100;

/// Where the names past the limit are counted.
pub use hist::record::OTHER;

/// One request as the mix sees it.
pub struct Entry<'a> {
    /// Its name, if given.
    pub name: Option<&'a str>,
    /// Its weight.
    pub weight: u64,
    /// Its method, for a name when it has none.
    pub method: &'a str,
    /// Its URL, for a name when it has none.
    pub url: &'a str,
}

/// Which request each send is, and under which name it is counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Request index of each send of a cycle.
    order: Vec<u32>,
    /// Name index of each request; empty when no request is named.
    name_of: Vec<u16>,
    names: Vec<String>,
}

/// `name` cut to [`hist::record::MAX_NAME_BYTES`] at a character boundary.
fn cut(mut name: String) -> String {
    let mut at = name.len().min(hist::record::MAX_NAME_BYTES);
    while !name.is_char_boundary(at) {
        at -= 1;
    }
    name.truncate(at);
    name
}

impl Mix {
    /// The mix of `entries` (at least one) with at most `max_names` names kept apart.
    pub fn new(entries: &[Entry], max_names: u64) -> Result<Mix, String> {
        if entries
            .iter()
            .any(|e| e.name.is_some_and(|n| n.trim().is_empty()))
        {
            return Err("a request's name is empty".into());
        }
        let weights: Vec<u64> = entries.iter().map(|e| e.weight).collect();
        let Some(weights) = reduced(&weights) else {
            return Err("every request has a weight of 0: nothing would be sent".into());
        };
        // Summed wide: weights come from files and specs, any u64.
        let cycle: u128 = weights.iter().map(|w| *w as u128).sum();
        if cycle > MAX_CYCLE as u128 {
            return Err(format!(
                "the weights add up to {cycle} (divided by their common factor); at most \
                 {MAX_CYCLE}: use smaller ones in the same proportions"
            ));
        }
        let mut slots: Vec<(f64, u32)> = Vec::with_capacity(cycle as usize);
        for (i, w) in weights.iter().enumerate() {
            let stride = cycle as f64 / *w as f64;
            slots.extend((0..*w).map(|k| ((k as f64 + 0.5) * stride, i as u32)));
        }
        slots.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let order: Vec<u32> = slots.into_iter().map(|(_, i)| i).collect();
        let (mut names, mut name_of) = (Vec::new(), Vec::new());
        if entries.iter().any(|e| e.name.is_some()) {
            for e in entries {
                let name = cut(e.name.map_or_else(|| default_name(e), str::to_string));
                let index = match names.iter().position(|n| *n == name) {
                    Some(i) => i,
                    None if (names.len() as u64) < max_names => {
                        names.push(name);
                        names.len() - 1
                    }
                    None => match names.iter().position(|n| n == OTHER) {
                        Some(i) => i,
                        None => {
                            names.push(OTHER.into());
                            names.len() - 1
                        }
                    },
                };
                name_of.push(index as u16);
            }
        }
        Ok(Mix {
            order,
            name_of,
            names,
        })
    }

    /// One request, unnamed: every send is it.
    pub fn one() -> Mix {
        Mix {
            order: vec![0],
            name_of: Vec::new(),
            names: Vec::new(),
        }
    }

    /// The request of the `seq`-th send of the run.
    pub fn pick(&self, seq: u64) -> usize {
        self.order[(seq % self.order.len() as u64) as usize] as usize
    }

    /// Every send is the same request.
    pub fn single(&self) -> bool {
        self.order.len() == 1
    }

    /// The names figures are kept under (empty: none, only the total).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The name index request `request` is counted under.
    pub fn name_of(&self, request: usize) -> Option<usize> {
        self.name_of.get(request).map(|i| *i as usize)
    }
}

/// The mix's weights as a header shows them (`1:3`, divided by their common factor, the first
/// 12 of a long list), or `None` when they are all equal (round-robin).
pub fn weights_text(weights: &[u64]) -> Option<String> {
    let w = reduced(weights)?;
    if w.windows(2).all(|p| p[0] == p[1]) {
        return None;
    }
    let text: Vec<String> = w.iter().take(12).map(u64::to_string).collect();
    Some(match w.len() {
        0..=12 => text.join(":"),
        n => format!("{}:… ({n} weights)", text.join(":")),
    })
}

/// The weights divided by their common factor (the mix they make is the same); `None` when
/// every one is 0.
fn reduced(weights: &[u64]) -> Option<Vec<u64>> {
    let common = weights.iter().copied().fold(0, gcd);
    (common > 0).then(|| weights.iter().map(|w| w / common).collect())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `GET /path?query` of a request without a name.
fn default_name(e: &Entry) -> String {
    let rest = e.url.split_once("://").map_or(e.url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    format!("{} {path}", e.method)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(name: Option<&'a str>, weight: u64, url: &'a str) -> Entry<'a> {
        Entry {
            name,
            weight,
            method: "GET",
            url,
        }
    }

    #[test]
    fn weights_give_each_request_its_share_of_every_cycle_spread_out() {
        let m = Mix::new(
            &[
                entry(None, 6, "http://h/a"),
                entry(None, 3, "http://h/b"),
                entry(None, 0, "http://h/c"),
            ],
            100,
        )
        .unwrap();
        // 6:3:0 is 2:1:0, a cycle of 3.
        let picks: Vec<usize> = (0..6).map(|s| m.pick(s)).collect();
        assert_eq!(picks, [0, 1, 0, 0, 1, 0]);
        // Any u64 weights: summed without overflow, refused past the cycle's bound.
        let e = Mix::new(&[entry(None, u64::MAX, "u"), entry(None, 1, "v")], 100).unwrap_err();
        assert!(e.contains("at most 1000000"), "{e}");
        // Many targets of equal weight: round-robin, built at once.
        let many: Vec<Entry> = (0..200_000).map(|_| entry(None, 1, "u")).collect();
        let m = Mix::new(&many, 100).unwrap();
        assert_eq!(
            (m.pick(0), m.pick(199_999), m.pick(200_000)),
            (0, 199_999, 0)
        );
        let m = Mix::new(&[entry(None, 1, "u"), entry(None, 1, "v")], 100).unwrap();
        assert_eq!((0..4).map(|s| m.pick(s)).collect::<Vec<_>>(), [0, 1, 0, 1]);
        assert!(m.names().is_empty(), "no name given: only the total");
        assert_eq!(weights_text(&[6, 3, 0]).as_deref(), Some("2:1:0"));
        assert_eq!(weights_text(&[3, 3, 3]), None, "equal: round-robin");
        assert_eq!(
            weights_text(&[1; 13].iter().chain(&[2]).copied().collect::<Vec<_>>()).as_deref(),
            Some("1:1:1:1:1:1:1:1:1:1:1:1:… (14 weights)")
        );
        assert!(Mix::new(&[entry(Some(" "), 1, "u")], 100).is_err());
        let e = Mix::new(&[entry(None, 0, "u")], 100).unwrap_err();
        assert!(e.contains("weight of 0"), "{e}");
        let e = Mix::new(&[entry(None, 999_999, "u"), entry(None, 2, "v")], 100).unwrap_err();
        assert!(e.contains("at most 1000000"), "{e}");
    }

    #[test]
    fn names_are_kept_apart_up_to_the_limit_then_counted_as_other() {
        let m = Mix::new(
            &[
                entry(Some("home"), 1, "http://h/"),
                entry(None, 1, "http://h:80/item?id=1"),
                entry(Some("home"), 1, "http://h/index"),
                entry(Some("buy"), 1, "http://h/buy"),
                entry(Some("sell"), 1, "http://h/sell"),
            ],
            2,
        )
        .unwrap();
        assert_eq!(m.names(), ["home", "GET /item?id=1", "other"]);
        let of: Vec<Option<usize>> = (0..5).map(|r| m.name_of(r)).collect();
        assert_eq!(of, [Some(0), Some(1), Some(0), Some(2), Some(2)]);
    }

    #[test]
    fn a_long_name_is_cut_at_a_character_boundary() {
        let long = "é".repeat(150);
        let m = Mix::new(&[entry(Some(&long), 1, "http://h/")], 10).unwrap();
        assert_eq!(m.names()[0], "é".repeat(100));
    }
}
