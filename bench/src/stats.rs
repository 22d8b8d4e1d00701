//! Latency summaries and small helpers for numbers.

/// `x` as a float, for printed figures and ratios: exact below 2^53, which every count,
/// byte total and nanosecond figure here is far below.
#[allow(clippy::cast_precision_loss)] // printed figures; values far below 2^53
pub fn f64_of(x: u64) -> f64 {
    x as f64
}

/// A length or count as a float (see [`f64_of`]).
pub fn f64_len(n: usize) -> f64 {
    f64_of(u64::try_from(n).expect("usize is 64 bits"))
}

/// A duration in whole nanoseconds (saturating: centuries do not occur here).
pub fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Mean, standard deviation and percentiles of a set of latencies, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
#[allow(clippy::struct_field_names)] // every name carries its unit
pub struct Summary {
    pub mean_us: f64,
    pub sd_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Summary {
    /// Summarises latencies given in nanoseconds (population standard deviation,
    /// nearest-rank percentiles).
    pub fn from_nanos(mut ns: Vec<u64>) -> Summary {
        if ns.is_empty() {
            return Summary::default();
        }
        ns.sort_unstable();
        let n = f64_len(ns.len());
        let mean = ns.iter().map(|&x| f64_of(x)).sum::<f64>() / n;
        let var = ns
            .iter()
            .map(|&x| {
                let d = f64_of(x) - mean;
                d * d
            })
            .sum::<f64>()
            / n;
        Summary {
            mean_us: mean / 1e3,
            sd_us: var.sqrt() / 1e3,
            p50_us: f64_of(percentile(&ns, 500)) / 1e3,
            p99_us: f64_of(percentile(&ns, 990)) / 1e3,
        }
    }
}

/// Nearest-rank percentile of sorted values (`per_mille`: 500 for the median).
fn percentile(sorted: &[u64], per_mille: usize) -> u64 {
    let rank = (per_mille * sorted.len()).div_ceil(1000);
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A latency in µs with a precision that suits its size.
pub fn us(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A ratio like "1.07×", or "n/a".
pub fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}×", a / b)
    } else {
        "n/a".to_string()
    }
}

/// 1000000 → "1,000,000".
pub fn thousands(n: u64) -> String {
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

/// A small deterministic PRNG (SplitMix64): the key order and read choices are the same in
/// every run with the same seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        let wide = (u128::from(self.next_u64()) * u128::from(n)) >> 64;
        u64::try_from(wide).expect("below n")
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let bound = u64::try_from(i + 1).expect("usize is 64 bits");
            let j = usize::try_from(self.below(bound)).expect("below a usize");
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_values() {
        let s = Summary::from_nanos((1..=100).map(|x| x * 1000).collect());
        assert!((s.mean_us - 50.5).abs() < 1e-9);
        assert!((s.p50_us - 50.0).abs() < 1e-9, "{s:?}");
        assert!((s.p99_us - 99.0).abs() < 1e-9, "{s:?}");
        assert!((s.sd_us - 28.866).abs() < 1e-3);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u32> = (0..1000).collect();
        Rng::new(7).shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
