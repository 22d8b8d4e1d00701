//! The preload library's GET on this host, where there is no CUSE: a view of N records
//! (`client_suite prepare-image`'s keys and values) that says it describes `/dev/null`, and a
//! command run under `LD_PRELOAD` with `HPKV_VIEW` pointing at it. Not a test: it prints what
//! the command prints.
//!
//! ```sh
//! cargo build --release -p hpkv-preload
//! gcc -std=c99 -O2 -Iuapi -Ibench/vm-get -o /tmp/get_ioctl bench/vm-get/get_ioctl.c
//! cargo run --release -p hpkv-preload --example host_bench -- 100000 /tmp/get_ioctl /dev/null 100000 200000
//! ```

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use hpkv_view::{ViewConfig, ViewWriter};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(records), Some(command)) = (args.first(), args.get(1)) else {
        eprintln!("usage: host_bench RECORDS COMMAND [ARGS...]");
        std::process::exit(2);
    };
    let records: u64 = records.parse().expect("RECORDS");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("null.view");
    let mut config = ViewConfig::new(records.max(16), records.max(16) * 24, records.max(16) * 64);
    config.device = std::fs::metadata("/dev/null").expect("/dev/null").rdev();
    let mut writer = ViewWriter::create(&path, &config).expect("view");
    for i in 0..records {
        let key = format!("range-{i:08}");
        let value = format!("value of record {i}");
        writer
            .upsert(key.as_bytes(), i + 1, Some(value.as_bytes()), value.len())
            .expect("upsert");
    }
    writer.publish().expect("publish");
    let heart = writer.heartbeat_handle();
    std::thread::spawn(move || loop {
        heart.beat();
        std::thread::sleep(hpkv_view::HEARTBEAT_INTERVAL);
    });
    let library = std::env::current_exe()
        .expect("this program's path")
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the target directory")
        .join("libhpkv_preload.so");
    let status = Command::new(command)
        .args(&args[2..])
        .env("LD_PRELOAD", &library)
        .env("HPKV_VIEW", &path)
        .status()
        .expect("the command");
    std::process::exit(status.code().unwrap_or(1));
}
