//! The views of `hpkvctl stats`: the module's three lines, every number (`--all`), JSON,
//! the Prometheus text format, and rates per second (`--watch`).

use std::fmt::Write as _;
use std::time::Duration;

use hpkv_abi::{DurabilityMode, InfoRecord, Profile, StatKind, StatsRecord, STATS_FIELDS};

use crate::progress::{short_duration, thousands, three_digits};

/// What `stats` shows: the store's numbers, who serves it (`None` from an hpkvd without
/// `HPKV_IOC_INFO`), and the device hpkvctl opened.
pub struct Snapshot<'a> {
    /// `HPKV_IOC_STATS`.
    pub stats: &'a StatsRecord,
    /// `HPKV_IOC_INFO`.
    pub info: Option<&'a InfoRecord>,
    /// The device's path, as hpkvctl opened it.
    pub device: &'a str,
}

/// The profile's name, or its number when this hpkvctl does not know it.
fn profile_name(number: u64) -> String {
    Profile::from_number(number).map_or_else(|| number.to_string(), |p| p.name().to_string())
}

/// The durability mode as a person reads it: `sync`, `write-behind (30000 ms, 1024 writes)`.
fn durability_text(info: &InfoRecord) -> String {
    match DurabilityMode::from_number(info.durability) {
        Some(DurabilityMode::Sync) => "sync".into(),
        Some(DurabilityMode::WriteBehind) => format!(
            "write-behind ({} ms, {} writes)",
            info.write_behind_delay_ms, info.write_behind_writes
        ),
        None => format!("unknown ({})", info.durability),
    }
}

fn durability_name(info: &InfoRecord) -> String {
    DurabilityMode::from_number(info.durability)
        .map_or_else(|| info.durability.to_string(), |m| m.name().to_string())
}

/// The identity and every number, a line each: `name  value`.
pub fn all_text(s: &Snapshot<'_>) -> String {
    let mut out = String::new();
    let mut line = |name: &str, value: &str| {
        let _ = writeln!(out, "{name:<27} {value}");
    };
    line("device", s.device);
    match s.info {
        Some(info) => {
            line("version", &info.version);
            line("node", &format!("/dev/{}", info.name));
            line("store", &info.device_path.display().to_string());
            line("store_uuid", &info.uuid_text());
            line("profile", &profile_name(info.abi_profile));
            line("durability", &durability_text(info));
        }
        None => line("version", "unknown (hpkvd without HPKV_IOC_INFO)"),
    }
    line(
        "uptime",
        &short_duration(Duration::from_millis(s.stats.uptime_ms)),
    );
    for (name, value) in s.stats.fields() {
        line(name, &value.to_string());
    }
    out
}

/// The identity and every number as one JSON object; the counters by their names in
/// `struct hpkv_stats`.
pub fn json(s: &Snapshot<'_>) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert("device".into(), s.device.into());
    if let Some(info) = s.info {
        object.insert("version".into(), info.version.clone().into());
        object.insert("node".into(), info.name.clone().into());
        object.insert(
            "store".into(),
            info.device_path.to_string_lossy().into_owned().into(),
        );
        object.insert("store_uuid".into(), info.uuid_text().into());
        object.insert("profile".into(), profile_name(info.abi_profile).into());
        object.insert("durability".into(), durability_name(info).into());
        object.insert(
            "write_behind_delay_ms".into(),
            info.write_behind_delay_ms.into(),
        );
        object.insert(
            "write_behind_writes".into(),
            info.write_behind_writes.into(),
        );
        object.insert("started_unix_ms".into(), info.started_unix_ms.into());
    }
    for (name, value) in s.stats.fields() {
        object.insert(name.to_string(), value.into());
    }
    serde_json::Value::Object(object)
}

/// A label value of the Prometheus text format: `\`, `"` and newlines escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A `# HELP` text: `\` and newlines escaped.
fn help_text(text: &str) -> String {
    text.trim().replace('\\', "\\\\").replace('\n', "\\n")
}

/// The Prometheus text format (version 0.0.4), for `node_exporter`'s textfile collector or a
/// scrape wrapper: every number as `hpkv_NAME` (counters `hpkv_NAME_total`), labelled with
/// the device, and `hpkv_info` with the identity in its labels.
pub fn prometheus(s: &Snapshot<'_>) -> String {
    let device = format!("device=\"{}\"", label_value(s.device));
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, labels: &str, value: &str| {
        let _ = writeln!(out, "# HELP {name} {}", help_text(help));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    };
    if let Some(info) = s.info {
        let labels = [
            ("version", info.version.clone()),
            ("node", info.name.clone()),
            ("store", info.device_path.to_string_lossy().into_owned()),
            ("store_uuid", info.uuid_text()),
            ("profile", profile_name(info.abi_profile)),
            ("durability", durability_name(info)),
        ];
        let mut all = device.clone();
        for (name, value) in labels {
            let _ = write!(all, ",{name}=\"{}\"", label_value(&value));
        }
        metric(
            "hpkv_info",
            "gauge",
            "Who serves the store: 1, the identity in the labels.",
            &all,
            "1",
        );
    }
    for field in STATS_FIELDS {
        let value = s
            .stats
            .fields()
            .into_iter()
            .find(|(name, _)| *name == field.name)
            .map_or(0, |(_, v)| v);
        match (field.name, field.kind) {
            ("abi_profile", _) => {} // hpkv_info's profile label
            ("uptime_ms", _) => {
                let secs = format!("{}.{:03}", value / 1000, value % 1000);
                metric("hpkv_uptime_seconds", "gauge", field.help, &device, &secs);
            }
            (name, StatKind::Counter) => {
                let name = format!("hpkv_{name}_total");
                metric(&name, "counter", field.help, &device, &value.to_string());
            }
            (name, StatKind::Gauge) => {
                let name = format!("hpkv_{name}");
                metric(&name, "gauge", field.help, &device, &value.to_string());
            }
        }
    }
    out
}

/// The rates of `--watch` between two samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    /// Operations (gets, puts, appends, deletes, purges) per second.
    pub ops: f64,
    /// Gets per second.
    pub gets: f64,
    /// Writes (puts, appends, deletes, purges) per second.
    pub writes: f64,
    /// Reads answered from the value cache per second.
    pub hits: f64,
    /// Device cache flushes per second.
    pub flushes: f64,
}

#[allow(clippy::cast_precision_loss, reason = "counts far below 2^53")]
fn per_second(before: u64, after: u64, secs: f64) -> f64 {
    after.saturating_sub(before) as f64 / secs
}

/// The rates from `a` to `b`, `elapsed` apart; `None` when the counters went back (hpkvd
/// restarted in between) or no time passed.
pub fn rates(a: &StatsRecord, b: &StatsRecord, elapsed: Duration) -> Option<Rates> {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 || b.uptime_ms < a.uptime_ms {
        return None;
    }
    let writes = |s: &StatsRecord| s.puts + s.appends + s.deletes + s.purges;
    Some(Rates {
        ops: per_second(a.gets + writes(a), b.gets + writes(b), secs),
        gets: per_second(a.gets, b.gets, secs),
        writes: per_second(writes(a), writes(b), secs),
        hits: per_second(a.cache_hits, b.cache_hits, secs),
        flushes: per_second(a.device_flushes, b.device_flushes, secs),
    })
}

/// The column titles of `--watch`.
pub const WATCH_HEADER: &str =
    "  seconds     records      ops/s     gets/s   writes/s     hits/s  flushes/s";

/// One line of `--watch`: seconds since it began, the records, the rates.
pub fn watch_line(seconds: f64, records: u64, r: &Rates) -> String {
    format!(
        "{seconds:>9.1} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10}",
        thousands(records),
        three_digits(r.ops),
        three_digits(r.gets),
        three_digits(r.writes),
        three_digits(r.hits),
        three_digits(r.flushes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_parse::Value;
    use std::path::PathBuf;

    fn snapshot_parts() -> (StatsRecord, InfoRecord) {
        let stats = StatsRecord {
            records: 3,
            disk_usage_bytes: 18,
            device_size_bytes: 1 << 30,
            gets: 7,
            puts: 3,
            uptime_ms: 61_500,
            ioctl_requests: 40,
            ..StatsRecord::default()
        };
        let info = InfoRecord {
            store_uuid: *b"0123456789abcdef",
            version: "0.2.0 (abc123, release)".into(),
            name: "hpkv-test".into(),
            device_path: PathBuf::from("/var/lib/hpkv/a \"quoted\" path.img"),
            durability: DurabilityMode::WriteBehind.number(),
            write_behind_delay_ms: 30_000,
            write_behind_writes: 1024,
            abi_profile: Profile::V13.number(),
            ..InfoRecord::default()
        };
        (stats, info)
    }

    /// A well-kept parser of the text format reads every line, every number, its type and
    /// the identity's labels.
    #[test]
    fn prometheus_text_is_accepted_by_a_parser() {
        let (stats, info) = snapshot_parts();
        let text = prometheus(&Snapshot {
            stats: &stats,
            info: Some(&info),
            device: "/dev/hpkv-test",
        });
        for line in text.lines() {
            let parsed = prometheus_parse::LineInfo::parse(line);
            assert!(
                !matches!(parsed, prometheus_parse::LineInfo::Ignored),
                "a line the parser does not take: {line}"
            );
        }
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let sample = |name: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        assert_eq!(sample("hpkv_records").value, Value::Gauge(3.0));
        assert_eq!(sample("hpkv_gets_total").value, Value::Counter(7.0));
        assert_eq!(
            sample("hpkv_ioctl_requests_total").value,
            Value::Counter(40.0)
        );
        assert_eq!(sample("hpkv_uptime_seconds").value, Value::Gauge(61.5));
        assert_eq!(
            sample("hpkv_records").labels.get("device"),
            Some("/dev/hpkv-test")
        );
        let info_sample = sample("hpkv_info");
        assert_eq!(info_sample.value, Value::Gauge(1.0));
        assert_eq!(info_sample.labels.get("node"), Some("hpkv-test"));
        assert_eq!(info_sample.labels.get("profile"), Some("v1.3"));
        assert_eq!(info_sample.labels.get("durability"), Some("write-behind"));
        assert_eq!(
            info_sample.labels.get("store_uuid"),
            Some("30313233-3435-3637-3839-616263646566")
        );
        // Every number of the header but the profile (a label of hpkv_info) is there.
        assert_eq!(scrape.samples.len(), STATS_FIELDS.len() - 1 + 1);
        assert!(scrape.docs.contains_key("hpkv_gets_total"));
        assert!(text.contains(r#"store="/var/lib/hpkv/a \"quoted\" path.img""#));
    }

    #[test]
    fn json_and_all_show_the_identity() {
        let (stats, info) = snapshot_parts();
        let s = Snapshot {
            stats: &stats,
            info: Some(&info),
            device: "/dev/hpkv-test",
        };
        let j = json(&s);
        assert_eq!(j["version"], "0.2.0 (abc123, release)");
        assert_eq!(j["node"], "hpkv-test");
        assert_eq!(j["profile"], "v1.3");
        assert_eq!(j["durability"], "write-behind");
        assert_eq!(j["records"], 3);
        let all = all_text(&s);
        for want in [
            "version",
            "/dev/hpkv-test",
            "v1.3",
            "write-behind (30000 ms",
            "1m01s",
        ] {
            assert!(all.contains(want), "{want} missing from:\n{all}");
        }
        let old = Snapshot { info: None, ..s };
        assert!(all_text(&old).contains("unknown (hpkvd without HPKV_IOC_INFO)"));
        assert!(json(&old).get("version").is_none());
    }

    #[test]
    fn watch_rates_are_per_second() {
        let a = StatsRecord {
            gets: 100,
            puts: 10,
            cache_hits: 50,
            device_flushes: 5,
            uptime_ms: 1000,
            ..StatsRecord::default()
        };
        let b = StatsRecord {
            gets: 300,
            puts: 30,
            deletes: 10,
            cache_hits: 150,
            device_flushes: 25,
            uptime_ms: 3000,
            ..StatsRecord::default()
        };
        let r = rates(&a, &b, Duration::from_secs(2)).unwrap();
        assert_eq!(
            r,
            Rates {
                ops: 115.0,
                gets: 100.0,
                writes: 15.0,
                hits: 50.0,
                flushes: 10.0
            }
        );
        assert_eq!(rates(&b, &a, Duration::from_secs(2)), None, "a restart");
        let line = watch_line(2.0, 1234, &r);
        assert_eq!(line.len(), WATCH_HEADER.len());
        assert!(line.contains("1,234") && line.contains("115"));
    }
}
