//! hpkvctl through the real device: runs inside the VM (`tests/vm/suite/run.sh`), against a
//! store hpkvd serves under a name of its own, which the suite may empty. Not part of a plain
//! `cargo test` (the host has no CUSE).
//!
//! ```text
//! cli_suite --hpkvctl PATH --name NAME [--main-device PATH]
//! ```
//!
//! Keys and values holding every byte value round-trip through `put`, `get --json`,
//! `scan --json`, `scan -0` and `dump`/`load`; what hpkvctl prints on a terminal (a pty)
//! holds no control byte; `--name` and `HPKV_DEVICE` reach the store, and `--main-device`
//! (another daemon) does not see its keys; `stats` says who serves. Each test prints
//! `HPKV-RESULT PASS name` or `HPKV-RESULT FAIL name reason`.

use std::fs::File;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Command, Output, Stdio};

/// Where the suite's keys start, so that a prefix scan finds exactly them.
const PREFIX: &[u8] = b"cli:";

/// A test of the suite.
type Test = fn(&Ctx);

struct Ctx {
    hpkvctl: String,
    name: String,
    main_device: String,
}

fn main() {
    let mut ctx = Ctx {
        hpkvctl: "hpkvctl".into(),
        name: "hpkv-cli".into(),
        main_device: "/dev/hpkv".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().expect("a value after each option");
        match arg.as_str() {
            "--hpkvctl" => ctx.hpkvctl = value,
            "--name" => ctx.name = value,
            "--main-device" => ctx.main_device = value,
            other => panic!("unknown argument {other}"),
        }
    }
    let tests: [(&str, Test); 7] = [
        (
            "every-byte-through-put-get-json-scan-json-scan-0",
            every_byte,
        ),
        ("every-byte-through-dump-and-load", dump_and_load),
        ("terminal-output-shows-no-control-byte", terminal),
        ("name-and-env-reach-the-second-daemon", name_and_env),
        ("exists-count-and-prefix", exists_count_prefix),
        ("stats-shows-who-serves", stats_identity),
        ("stats-watch-and-prometheus", stats_watch_prometheus),
    ];
    let mut failed = 0;
    for (name, test) in tests {
        match catch_unwind(AssertUnwindSafe(|| test(&ctx))) {
            Ok(()) => println!("HPKV-RESULT PASS cli:{name}"),
            Err(e) => {
                failed += 1;
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(ToString::to_string))
                    .unwrap_or_default();
                println!("HPKV-RESULT FAIL cli:{name} {}", why.replace('\n', " "));
            }
        }
    }
    std::process::exit(i32::from(failed > 0));
}

impl Ctx {
    /// hpkvctl on the suite's store, with `args`.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.hpkvctl);
        cmd.args(["--name", &self.name]).args(args);
        cmd.env_remove("HPKV_DEVICE");
        cmd
    }

    /// Runs hpkvctl; its output, which must be a success.
    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cmd(args).output().expect("hpkvctl runs");
        assert!(out.status.success(), "hpkvctl {args:?}: {}", text(&out));
        out.stdout
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// `bytes` as an argument of `hpkvctl -e`: letters and digits as they are, `\xHH` else.
fn arg(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// The suite's records: every byte value in keys and values, and the separators and escape
/// sequences of every format.
fn records() -> Vec<(Vec<u8>, Vec<u8>)> {
    let all: Vec<u8> = (0..=255).collect();
    let with_prefix = |k: &[u8]| [PREFIX, k].concat();
    vec![
        (with_prefix(&all), all.iter().rev().copied().collect()),
        (
            with_prefix(b"a:b\nc\0d\x1b[31m"),
            b"\0\0:\n\\\x1b]0;title\x07\x1b[2J".to_vec(),
        ),
        (
            with_prefix(b"\xff\xfe\xc3\x28"),
            b"\r\n\x7f\x9b\xc2\x9b".to_vec(),
        ),
        (with_prefix(b"plain"), b"value\\x41 \"quoted\"".to_vec()),
    ]
}

fn sorted_records() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut r = records();
    r.sort();
    r
}

fn put_all(ctx: &Ctx) {
    for (k, v) in records() {
        ctx.ok(&["-e", "put", &arg(&k), &arg(&v)]);
    }
}

/// The bytes of a JSON string of hpkvctl: one character per byte.
fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    v.as_str()
        .expect("a string")
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("U+0000 to U+00FF"))
        .collect()
}

/// The fields of `-0` output, the two escapes undone.
fn nul_fields(out: &[u8]) -> Vec<Vec<u8>> {
    let mut fields: Vec<&[u8]> = out.split(|&b| b == 0).collect();
    assert_eq!(
        fields.pop(),
        Some(&b""[..]),
        "the last field ends with a NUL"
    );
    fields
        .into_iter()
        .map(|f| {
            let mut bytes = f.iter().copied();
            let mut field = vec![];
            while let Some(b) = bytes.next() {
                if b != b'\\' {
                    field.push(b);
                    continue;
                }
                field.push(match bytes.next() {
                    Some(b'0') => 0,
                    Some(b'\\') => b'\\',
                    other => panic!("a backslash, then {other:?}"),
                });
            }
            field
        })
        .collect()
}

fn every_byte(ctx: &Ctx) {
    put_all(ctx);
    for (k, v) in records() {
        let out = ctx.ok(&["-e", "get", "--json", &arg(&k)]);
        let json: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(json_bytes(&json["key"]), k);
        assert_eq!(
            json_bytes(&json["value"]),
            v,
            "get --json {}",
            k.escape_ascii()
        );
        // Raw output is the value's bytes, exactly.
        assert_eq!(ctx.ok(&["-e", "get", "--raw", &arg(&k)]), v);
    }
    let want = sorted_records();
    let out = ctx.ok(&["-e", "scan", "--json", "--prefix", &arg(PREFIX)]);
    let got: Vec<(Vec<u8>, Vec<u8>)> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let json: serde_json::Value = serde_json::from_slice(line).expect("a JSON line");
            (json_bytes(&json["key"]), json_bytes(&json["value"]))
        })
        .collect();
    assert_eq!(got, want, "scan --json");
    let out = ctx.ok(&["-e", "scan", "-0", "--prefix", &arg(PREFIX)]);
    let flat: Vec<Vec<u8>> = want
        .iter()
        .flat_map(|(k, v)| [k.clone(), v.clone()])
        .collect();
    assert_eq!(nul_fields(&out), flat, "scan -0");
}

fn dump_and_load(ctx: &Ctx) {
    put_all(ctx);
    let dump = "/tmp/cli-suite.hpkvdump";
    ctx.ok(&["dump", dump]);
    ctx.ok(&["purge", "--yes"]);
    assert_eq!(ctx.ok(&["count"]), b"0\n", "purged");
    ctx.ok(&["load", dump]);
    let out = ctx.ok(&["-e", "scan", "-0", "--prefix", &arg(PREFIX)]);
    let flat: Vec<Vec<u8>> = sorted_records()
        .into_iter()
        .flat_map(|(k, v)| [k, v])
        .collect();
    assert_eq!(nul_fields(&out), flat, "after dump, purge and load");
}

/// Runs hpkvctl with its standard output on a pty; what the terminal received.
fn on_terminal(ctx: &Ctx, args: &[&str]) -> Vec<u8> {
    let pty = nix::pty::openpty(None, None).expect("a pty");
    let mut child = ctx
        .cmd(args)
        .stdout(Stdio::from(pty.slave))
        .stderr(Stdio::null())
        .spawn()
        .expect("hpkvctl runs");
    let status = child.wait().expect("hpkvctl ends");
    assert!(status.success(), "hpkvctl {args:?} on a terminal: {status}");
    // The child is gone and its end of the pty closed: read until EIO (no writer left).
    let mut master = File::from(pty.master);
    let mut seen = vec![];
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    seen
}

fn terminal(ctx: &Ctx) {
    put_all(ctx);
    let shown: Vec<Vec<u8>> = vec![
        on_terminal(ctx, &["-e", "scan", "--prefix", &arg(PREFIX)]),
        on_terminal(ctx, &["-e", "get", &arg(&records()[1].0)]),
        on_terminal(
            ctx,
            &["-e", "scan", "--keys-only", "--prefix", &arg(PREFIX)],
        ),
    ];
    for out in shown {
        assert!(!out.is_empty(), "something was shown");
        let bad: Vec<u8> = out
            .iter()
            .copied()
            .filter(|&b| !(b == b'\n' || b == b'\r' || (0x20..0x7f).contains(&b)))
            .collect();
        assert!(
            bad.is_empty(),
            "control or non-ASCII bytes reached the terminal: {:?} in {}",
            bad,
            String::from_utf8_lossy(&out)
        );
    }
    // What the terminal shows reads back (-e) as the key.
    let key = &records()[1].0;
    let shown = on_terminal(ctx, &["-e", "scan", "--keys-only", "--prefix", &arg(key)]);
    let line = String::from_utf8(shown).unwrap();
    let line = line.trim_end();
    let value = ctx.ok(&["-e", "get", "--raw", line]);
    assert_eq!(value, records()[1].1, "the shown key, pasted back");
}

fn name_and_env(ctx: &Ctx) {
    ctx.ok(&["put", "cli-name-key", "on the second daemon"]);
    let main = Command::new(&ctx.hpkvctl)
        .args(["--device", &ctx.main_device, "exists", "cli-name-key"])
        .output()
        .unwrap();
    assert_eq!(
        main.status.code(),
        Some(1),
        "not on {}: {}",
        ctx.main_device,
        text(&main)
    );
    let by_env = Command::new(&ctx.hpkvctl)
        .args(["get", "cli-name-key"])
        .env("HPKV_DEVICE", format!("/dev/{}", ctx.name))
        .output()
        .unwrap();
    assert!(by_env.status.success(), "{}", text(&by_env));
    assert_eq!(by_env.stdout, b"on the second daemon");
    let bad = Command::new(&ctx.hpkvctl)
        .args(["--name", "../x", "count"])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a name that is not a device name is a usage error"
    );
}

fn exists_count_prefix(ctx: &Ctx) {
    ctx.ok(&["purge", "--yes"]);
    for k in ["p:a", "p:b", "p;c", "q"] {
        ctx.ok(&["put", k, "v"]);
    }
    assert_eq!(ctx.ok(&["exists", "p:a"]), b"true\n");
    let missing = ctx.cmd(&["exists", "p:zz"]).output().unwrap();
    assert_eq!(
        (missing.status.code(), missing.stdout),
        (Some(1), b"false\n".to_vec())
    );
    assert_eq!(ctx.ok(&["count"]), b"4\n");
    assert_eq!(ctx.ok(&["count", "--prefix", "p:"]), b"2\n");
    assert_eq!(
        ctx.ok(&["scan", "--keys-only", "--prefix", "p"]),
        b"p:a\np:b\np;c\n"
    );
}

fn stats_identity(ctx: &Ctx) {
    let all = String::from_utf8(ctx.ok(&["stats", "--all"])).unwrap();
    let field = |name: &str| -> String {
        let line = all
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from stats --all:\n{all}"));
        line[name.len()..].trim().to_string()
    };
    assert_eq!(field("node"), format!("/dev/{}", ctx.name));
    assert_eq!(field("store"), "/tmp/cli.img");
    assert_eq!(field("profile"), "readme");
    assert_eq!(field("durability"), "sync");
    assert_eq!(field("store_uuid").len(), 36);
    assert!(field("version").contains('('), "{}", field("version"));
    assert!(!field("uptime").is_empty());
    let json: serde_json::Value = serde_json::from_slice(&ctx.ok(&["stats", "--json"])).unwrap();
    assert_eq!(json["node"], ctx.name.as_str());
    assert_eq!(json["profile"], "readme");
    assert_eq!(json["durability"], "sync");
    assert_eq!(json["store"], "/tmp/cli.img");
    assert_eq!(json["store_uuid"].as_str().map(str::len), Some(36));
    let version = json["version"].as_str().expect("a version").to_string();
    assert!(version.starts_with(env!("CARGO_PKG_VERSION")), "{version}");
    assert!(
        version.ends_with(", release)"),
        "the build profile: {version}"
    );
    let hpkvctl = String::from_utf8(ctx.ok(&["--version"])).unwrap();
    assert_eq!(
        hpkvctl.trim(),
        format!("hpkvctl {version}"),
        "one build, one version"
    );
    assert_eq!(
        ctx.ok(&["stats"]).split(|&b| b == b'\n').count(),
        4,
        "the module's 3 lines"
    );
}

fn stats_watch_prometheus(ctx: &Ctx) {
    let watch = String::from_utf8(ctx.ok(&["stats", "--watch", "0.2", "--count", "2"])).unwrap();
    let lines: Vec<&str> = watch.lines().collect();
    assert_eq!(lines.len(), 4, "a title, the columns, two lines: {watch}");
    assert!(lines[1].contains("ops/s") && lines[1].contains("flushes/s"));
    let prom = String::from_utf8(ctx.ok(&["stats", "--prometheus"])).unwrap();
    let info = prom
        .lines()
        .find(|l| l.starts_with("hpkv_info{"))
        .expect("hpkv_info");
    assert!(info.contains(&format!("node=\"{}\"", ctx.name)), "{info}");
    assert!(prom.contains("# TYPE hpkv_gets_total counter"));
    // The live output, through a well-kept parser of the text format: every line taken, and
    // the counters typed as counters.
    for line in prom.lines() {
        let parsed = prometheus_parse::LineInfo::parse(line);
        assert!(
            !matches!(parsed, prometheus_parse::LineInfo::Ignored),
            "a line the parser does not take: {line}"
        );
    }
    let scrape = prometheus_parse::Scrape::parse(prom.lines().map(|l| Ok(l.to_string())))
        .expect("the Prometheus text format");
    let gets = scrape
        .samples
        .iter()
        .find(|s| s.metric == "hpkv_gets_total")
        .expect("hpkv_gets_total");
    assert!(
        matches!(gets.value, prometheus_parse::Value::Counter(n) if n >= 0.0),
        "{:?}",
        gets.value
    );
}
