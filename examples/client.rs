//! The Rust client of `/dev/hpkv` in one program: stores, appends to, reads, lists, counts
//! and deletes a few records under a prefix of its own, then prints the store's numbers.
//!
//! ```sh
//! cargo run --example client                    # /dev/hpkv, or $HPKV_DEVICE
//! cargo run --example client -- /dev/hpkv-test  # another store (hpkvd --name hpkv-test)
//! ```
//!
//! It needs a running hpkvd (README, "Two commands"); every failure is printed with the
//! errno it stands for (`hpkv_client::Error::errno`).

use std::process::ExitCode;

use hpkv_client::{Client, Error};

/// The prefix of every key this example writes, and removes again.
const PREFIX: &[u8] = b"example:client:";

fn main() -> ExitCode {
    let client = match std::env::args_os().nth(1) {
        Some(path) => Client::open(path),
        None => Client::open_env(),
    };
    match client.and_then(|c| run(&c)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client example: {e} (errno {})", e.errno());
            ExitCode::FAILURE
        }
    }
}

fn key(name: &str) -> Vec<u8> {
    [PREFIX, name.as_bytes()].concat()
}

fn run(hpkv: &Client) -> Result<(), Error> {
    println!("the daemon serves the {} profile", hpkv.profile());

    // Keys and values are bytes: a NUL, a colon and a newline are fine.
    hpkv.put(&key("greeting"), b"hello")?;
    hpkv.append(&key("greeting"), b", world\n")?;
    hpkv.put(&key("binary"), &[0, b':', b'\n', 0xff])?;
    let greeting = hpkv.get(&key("greeting"))?.unwrap_or_default();
    println!("greeting = {:?}", String::from_utf8_lossy(&greeting));
    assert!(hpkv.exists(&key("binary"))?);
    assert_eq!(hpkv.get(&key("missing"))?, None, "a missing key is None");

    // A value too long for the store is refused before anything is sent.
    match hpkv.put(&key("huge"), &vec![b'x'; hpkv_client::abi::VALUE_MAX + 1]) {
        Err(Error::Request(why)) => println!("refused as expected: {why}"),
        other => panic!("a 102401-byte value was not refused: {other:?}"),
    }

    // The records under the prefix, in key order, fetched a page at a time.
    for record in hpkv.scan().prefix(PREFIX) {
        let (k, v) = record?;
        println!("{} = {} bytes", k.escape_ascii(), v.len());
    }
    let count = hpkv.scan().prefix(PREFIX).count();
    println!("{count} records under {}", PREFIX.escape_ascii());

    for name in ["greeting", "binary"] {
        // DELETE's layout depends on the profile; the readme profile cannot name a key
        // holding a NUL, which these do not.
        assert!(hpkv.delete(&key(name))?, "{name} was there");
    }
    hpkv.sync()?;
    let stats = hpkv.stats()?;
    print!("{}", stats.proc_text());
    Ok(())
}
