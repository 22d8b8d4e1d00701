//! Progress of `dump` and `load` on a terminal (standard error), nothing otherwise, in
//! records.
//!
//! The rate is the work done over the time since the start, not a short-term estimate, so it
//! converges and so does the ETA derived from it; the ETA is shown once there is enough to
//! go on ([`ETA_AFTER`] and [`ETA_AFTER_FRACTION`] of the work). Rates are rounded to three
//! significant digits (`80.6 records/s`, `12,300 records/s`).

use std::io::{self, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// No ETA before this much time has passed...
pub const ETA_AFTER: Duration = Duration::from_secs(2);
/// ...and this fraction of the work is done.
pub const ETA_AFTER_FRACTION: f64 = 0.02;
/// Redraws per second at most.
const REFRESH_HZ: u8 = 4;

/// `n` with thousands separators: `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate, rounded to three significant digits: `0.523`, `80.6`, `1,230`, `123,000`.
pub fn three_digits(rate: f64) -> String {
    if !rate.is_finite() || rate <= 0.0 {
        return "0".to_string();
    }
    let step = 10f64.powf(rate.log10().floor() - 2.0);
    let rounded = (rate / step).round() * step;
    let magnitude = rounded.log10().floor();
    if magnitude >= 2.0 {
        return thousands(float_to_u64(rounded));
    }
    let decimals = usize::try_from(2 - float_to_i64(magnitude))
        .unwrap_or(0)
        .min(6);
    format!("{rounded:.decimals$}")
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "rounded, non-negative values far below 2^53"
)]
fn float_to_u64(x: f64) -> u64 {
    x.max(0.0) as u64
}

#[allow(clippy::cast_possible_truncation, reason = "a small exponent")]
fn float_to_i64(x: f64) -> i64 {
    x as i64
}

#[allow(clippy::cast_precision_loss, reason = "counts far below 2^53")]
fn to_f64(n: u64) -> f64 {
    n as f64
}

/// Work per second since the start.
pub fn rate(done: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    to_f64(done) / secs
}

/// The time left at the average rate so far, once there is enough to go on.
pub fn eta(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    let enough = elapsed >= ETA_AFTER && to_f64(done) >= ETA_AFTER_FRACTION * to_f64(total);
    let per_sec = rate(done, elapsed);
    if !enough || per_sec <= 0.0 || done > total {
        return None;
    }
    Some(Duration::from_secs_f64(to_f64(total - done) / per_sec))
}

/// `1h02m`, `3m05s`, `42s`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// A rate of records: `80.6 records/s`.
pub fn rate_text(per_sec: f64) -> String {
    format!("{} records/s", three_digits(per_sec))
}

/// A progress bar on standard error when it is a terminal, hidden otherwise. `total` may
/// grow ([`ProgressBar::set_length`]); 0 means unknown (no bar, no ETA).
pub fn bar(what: &str, total: u64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr_with_hz(REFRESH_HZ),
    );
    let counts = if total == 0 {
        "{count}"
    } else {
        "[{bar:30}] {count}"
    };
    let template = format!("{what} {counts} ({{rate}}{{eta}})");
    let style = ProgressStyle::with_template(&template)
        .expect("a valid template")
        .progress_chars("=> ")
        .with_key("count", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&count_text(s.pos(), s.len()));
        })
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&rate_text(rate(s.pos(), s.elapsed())));
        })
        .with_key("eta", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let total = s.len().unwrap_or(0);
            if let Some(left) = eta(s.pos(), total, s.elapsed()) {
                let _ = write!(w, ", {} left", short_duration(left));
            }
        });
    bar.set_style(style);
    bar
}

/// `1,234/5,000 records`, or `1,234 records` when the total is unknown.
fn count_text(pos: u64, len: Option<u64>) -> String {
    match len.filter(|&l| l > 0) {
        Some(len) => format!("{}/{} records", thousands(pos), thousands(len)),
        None => format!("{} records", thousands(pos)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_have_three_significant_digits() {
        for (rate, text) in [
            (80.630_1, "80.6"),
            (0.523_4, "0.523"),
            (1.0, "1.00"),
            (9.996, "10.0"),
            (123.4, "123"),
            (1234.5, "1,230"),
            (98_765.0, "98,800"),
            (12_345_678.0, "12,300,000"),
            (0.0, "0"),
            (f64::NAN, "0"),
        ] {
            assert_eq!(three_digits(rate), text, "{rate}");
        }
        assert_eq!(rate_text(80.630_1), "80.6 records/s");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
    }

    /// A load at a steady rate after a slow start: the ETA shows only once there is enough
    /// to go on, and then moves towards the true time left, never away from it.
    #[test]
    fn the_eta_converges() {
        let total = 100_000u64;
        assert_eq!(eta(10, total, Duration::from_secs(1)), None, "too early");
        assert_eq!(
            eta(1000, total, Duration::from_secs(5)),
            None,
            "1% is too little"
        );
        // 1 s to warm up with nothing done, then 10,000 records/s: 11 s in all.
        let mut last_error = f64::INFINITY;
        for t in 3..=11u64 {
            let done = (t - 1) * 10_000;
            let left = eta(done, total, Duration::from_secs(t)).expect("an ETA");
            let error = (left.as_secs_f64() - to_f64(11 - t)).abs();
            assert!(error <= last_error, "at {t} s the ETA moved away: {left:?}");
            last_error = error;
        }
        assert!(last_error < 1e-9, "exact at the end");
        assert_eq!(short_duration(Duration::from_secs(79)), "1m19s");
        assert_eq!(short_duration(Duration::from_secs(3725)), "1h02m");
    }

    #[test]
    fn counts_read_well() {
        assert_eq!(count_text(1234, Some(5000)), "1,234/5,000 records");
        assert_eq!(count_text(7, None), "7 records");
    }
}
