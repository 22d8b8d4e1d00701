use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::*;
use hpkv_abi::retry_sim::{self, Answer, Memory};
use hpkv_abi::{Command, RangeBuilder};

/// Where the simulated caller's buffer sits: page aligned, like a fresh allocation.
const BASE: u64 = 0x7f12_3450_0000;

/// hpkvd's decoder and reply builders over an in-memory store, mirroring the daemon's
/// `device.rs`, behind the kernel's half of the retry protocol (`hpkv_abi::retry_sim`).
///
/// The caller's memory is the call's buffer, followed by readable bytes to the end of its
/// last page; beyond that the kernel answers EFAULT. A write anywhere but the buffer panics:
/// it would be a soundness hole in the `ffi` wrappers.
struct Sim {
    profile: Profile,
    store: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// The command of every call, in order.
    calls: Mutex<Vec<u32>>,
    /// Appended to the value of the key of every `HPKV_IOC_GET` before it is answered: a
    /// concurrent writer.
    grow_on_get: usize,
    /// The `abi_profile` STATS reports (`None`: the profile's number).
    reported_profile: Option<u64>,
    /// RANGE answers its records in reverse order: a broken device.
    range_reversed: bool,
    /// `HPKV_IOC_PUT_BATCH` answers ENOTTY: an hpkvd older than the command.
    no_batch: bool,
}

impl Sim {
    fn new(profile: Profile) -> Arc<Sim> {
        Arc::new(Sim {
            profile,
            store: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(vec![]),
            grow_on_get: 0,
            reported_profile: None,
            range_reversed: false,
            no_batch: false,
        })
    }

    fn calls(&self) -> Vec<u32> {
        self.calls.lock().unwrap().clone()
    }

    fn count(&self, cmd: u32) -> usize {
        self.calls().iter().filter(|&&c| c == cmd).count()
    }

    /// A `write()`: the daemon's parse, then the put or append (recorded as [`WRITE_CALL`]).
    fn write(&self, buf: &[u8]) -> Result<(), Errno> {
        self.calls.lock().unwrap().push(WRITE_CALL);
        let mut store = self.store.lock().unwrap();
        match abi::parse_write(buf)? {
            abi::WriteRequest::Put { key, value } => {
                store.insert(key.to_vec(), value.to_vec());
            }
            abi::WriteRequest::Append { key, suffix } => {
                store.entry(key.to_vec()).or_default().extend(suffix);
            }
        }
        Ok(())
    }

    /// Runs the retry protocol for `cmd` on `mem` (empty: a null argument).
    fn ioctl(&self, cmd: u32, mem: &mut [u8]) -> Result<i32, Errno> {
        self.calls.lock().unwrap().push(cmd);
        if cmd == abi::IOC_PUT_BATCH && self.no_batch {
            return Err(Errno::ENOTTY);
        }
        let arg = if mem.is_empty() { 0 } else { BASE };
        let mut memory = Memory::with_page_tail(BASE, mem);
        let outcome = retry_sim::ioctl(&mut memory, |input, out_size| {
            retry_sim::daemon_round(self.profile, cmd, arg, input, out_size, |command| {
                let (result, data) = self.run(command);
                Answer::done(result, data)
            })
        });
        outcome.result
    }

    /// hpkvd's answer: the ioctl result and the bytes copied out.
    fn run(&self, command: Command<'_>) -> (i32, Vec<u8>) {
        let mut store = self.store.lock().unwrap();
        let done = (0, vec![]);
        let fail = |e: i32| (-e, vec![]);
        match command {
            Command::Get { .. } => panic!("the client must not use the module's GET"),
            Command::SafeGet { key, capacity } => {
                let Some(value) = store.get_mut(key) else {
                    return fail(libc::ENOENT);
                };
                value.resize(value.len() + self.grow_on_get, b'+');
                let reply = abi::safe_get_reply(capacity, value.len());
                let mut data = reply.value_len.to_vec();
                if reply.with_value {
                    data.extend_from_slice(value);
                }
                (reply.result, data)
            }
            Command::Delete { key } => match store.remove(key) {
                Some(_) => done,
                None => fail(libc::ENOENT),
            },
            Command::Purge => {
                store.clear();
                done
            }
            Command::Insert { key, value } => {
                store.insert(key.to_vec(), value.to_vec());
                done
            }
            Command::Append { key, suffix } => {
                let value = store.entry(key.to_vec()).or_default();
                if value.len() + suffix.len() > abi::VALUE_MAX {
                    return fail(libc::EMSGSIZE);
                }
                value.extend_from_slice(suffix);
                done
            }
            Command::Range(req) => {
                let in_range = |k: &[u8]| {
                    let after_start = req.start.is_empty()
                        || if req.start_exclusive {
                            k > req.start
                        } else {
                            k >= req.start
                        };
                    after_start && (req.end.is_empty() || k < req.end)
                };
                let mut records: Vec<_> = store.iter().filter(|(k, _)| in_range(k)).collect();
                if self.range_reversed {
                    records.reverse();
                }
                let mut builder = RangeBuilder::new(&req);
                for (k, v) in records {
                    if !builder.push(k, v) {
                        break;
                    }
                }
                builder.finish()
            }
            Command::Stats => {
                let record = StatsRecord {
                    records: store.len() as u64,
                    disk_usage_bytes: store.values().map(|v| v.len() as u64).sum(),
                    device_size_bytes: 1 << 30,
                    abi_profile: self.reported_profile.unwrap_or(self.profile.number()),
                    ..Default::default()
                };
                (0, record.encode())
            }
            Command::Info => {
                let info = abi::InfoRecord {
                    name: "sim".into(),
                    abi_profile: self.profile.number(),
                    ..Default::default()
                };
                (0, info.encode())
            }
            Command::Sync => done,
            Command::PutBatch(records) => {
                for (k, v) in records.iter() {
                    store.insert(k.to_vec(), v.to_vec());
                }
                (i32::try_from(records.count()).unwrap(), vec![])
            }
        }
    }
}

/// What [`Sim::calls`] records for a `write()` (no ioctl has this number).
const WRITE_CALL: u32 = u32::MAX;

struct Shared(Arc<Sim>);

impl Transport for Shared {
    fn call(&self, call: Call<'_>) -> Result<i32, Errno> {
        let sim = &self.0;
        match call {
            Call::Kv(cmd, buf) => sim.ioctl(cmd, buf),
            Call::Write(buf) => sim.write(buf).map(|()| 0),
            Call::PutBatch(buf) => sim.ioctl(abi::IOC_PUT_BATCH, &mut buf.to_vec()),
            Call::DeleteStr(buf) | Call::DeleteV13(buf) => sim.ioctl(abi::CMD_DELETE, buf),
            Call::Purge => sim.ioctl(abi::CMD_PURGE, &mut []),
            Call::SafeGet(buf) => sim.ioctl(abi::IOC_GET, buf),
            Call::Range(buf) => sim.ioctl(abi::IOC_RANGE, buf),
            Call::Stats(buf) => sim.ioctl(abi::IOC_STATS, buf),
            Call::Info(buf) => sim.ioctl(abi::IOC_INFO, buf),
            Call::Sync => sim.ioctl(abi::IOC_SYNC, &mut []),
        }
    }
}

fn client(sim: &Arc<Sim>) -> Client {
    Client::from_transport(Box::new(Shared(sim.clone()))).unwrap()
}

fn both() -> [Profile; 2] {
    [Profile::Readme, Profile::V13]
}

#[test]
fn learns_the_profile_from_stats_at_open() {
    for profile in both() {
        let sim = Sim::new(profile);
        assert_eq!(client(&sim).profile(), profile);
        assert_eq!(sim.calls(), vec![abi::IOC_STATS]);
    }
    let sim = Arc::new(Sim {
        reported_profile: Some(7),
        ..Arc::into_inner(Sim::new(Profile::Readme)).unwrap()
    });
    let e = Client::from_transport(Box::new(Shared(sim))).unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    assert_eq!(e.errno(), libc::EPROTO);
}

#[test]
fn put_by_write_writes_what_write_can_say_and_inserts_the_rest() {
    for profile in both() {
        let sim = Sim::new(profile);
        let c = client(&sim);
        let long_key = vec![b'k'; abi::STR_KEY_MAX + 1];
        let long_value = vec![b'v'; abi::WRITE_VALUE_MAX + 1];
        let cases: [(&[u8], &[u8], u32); 5] = [
            (b"plain", b"v:1\0\n", WRITE_CALL),
            (b"a:colon", b"v", abi::CMD_INSERT),
            (b"plus", b"+not an append", abi::CMD_INSERT),
            (&long_key, b"v", abi::CMD_INSERT),
            (b"big", &long_value, abi::CMD_INSERT),
        ];
        for (key, value, call) in cases {
            let before = sim.calls().len();
            c.put_by_write(key, value).unwrap();
            assert_eq!(sim.calls()[before..], [call], "{}", key.escape_ascii());
            assert_eq!(c.get(key).unwrap().as_deref(), Some(value));
        }
        let e = c.put_by_write(b"", b"v").unwrap_err();
        assert!(matches!(e, Error::Request(_)), "{e}");
    }
}

#[test]
fn put_get_append_delete_in_both_profiles() {
    for profile in both() {
        let sim = Sim::new(profile);
        let c = client(&sim);
        assert_eq!(c.get(b"k").unwrap(), None);
        c.put(b"k", b"v:1\0\n").unwrap();
        assert_eq!(c.get(b"k").unwrap().unwrap(), b"v:1\0\n");
        c.append(b"k", b"+more").unwrap();
        assert_eq!(c.get(b"k").unwrap().unwrap(), b"v:1\0\n+more");
        c.append(b"new", b"x").unwrap();
        assert_eq!(c.get(b"new").unwrap().unwrap(), b"x");
        assert!(c.delete(b"k").unwrap(), "{profile}");
        assert!(!c.delete(b"k").unwrap());
        assert_eq!(c.get(b"k").unwrap(), None);
        let s = c.stats().unwrap();
        assert_eq!((s.records, s.disk_usage_bytes), (1, 1));
        c.sync().unwrap();
        c.purge().unwrap();
        assert_eq!(c.stats().unwrap().records, 0);
    }
}

#[test]
fn binary_keys_and_the_readme_delete() {
    let key = b"a\0b:c\n";
    for profile in both() {
        let sim = Sim::new(profile);
        let c = client(&sim);
        c.put(key, b"\0").unwrap();
        assert_eq!(c.get(key).unwrap().unwrap(), b"\0");
        let deletes = sim.count(abi::CMD_DELETE);
        match profile {
            Profile::V13 => assert!(c.delete(key).unwrap()),
            Profile::Readme => {
                let e = c.delete(key).unwrap_err();
                assert!(e.to_string().contains("NUL byte"), "{e}");
                assert_eq!(e.errno(), libc::EINVAL);
                assert_eq!(sim.count(abi::CMD_DELETE), deletes, "no call made");
            }
        }
        // The longest key: 512 bytes through the binary layouts, 511 as a string.
        let long = vec![b'k'; abi::KEY_MAX];
        c.put(&long, b"v").unwrap();
        assert_eq!(c.delete(&long).is_ok(), profile == Profile::V13);
        c.put(&long[1..], b"v").unwrap();
        assert!(c.delete(&long[1..]).unwrap());
    }
}

#[test]
fn limits_are_checked_before_the_call() {
    let sim = Sim::new(Profile::Readme);
    let c = client(&sim);
    let too_long = vec![b'k'; abi::KEY_MAX + 1];
    let big = vec![b'v'; abi::VALUE_MAX + 1];
    let errors = [
        c.get(b"").unwrap_err(),
        c.get(&too_long).unwrap_err(),
        c.put(b"", b"v").unwrap_err(),
        c.put(&too_long, b"v").unwrap_err(),
        c.put(b"k", b"").unwrap_err(),
        c.put(b"k", &big).unwrap_err(),
        c.append(b"k", b"").unwrap_err(),
        c.delete(b"").unwrap_err(),
    ];
    for e in errors {
        assert!(matches!(e, Error::Request(_)), "{e}");
        assert_eq!(e.errno(), libc::EINVAL);
    }
    assert_eq!(
        sim.calls(),
        vec![abi::IOC_STATS],
        "nothing reached the device"
    );
    c.put(b"k", &big[1..]).unwrap();
    assert_eq!(c.get(b"k").unwrap().unwrap().len(), abi::VALUE_MAX);
    let e = c.append(b"k", b"x").unwrap_err();
    assert!(matches!(e, Error::TooLarge), "{e}");
    assert_eq!(e.errno(), libc::EMSGSIZE);
    assert_eq!(
        e.to_string(),
        "too large: the value would pass 102400 bytes"
    );
}

#[test]
fn get_asks_again_once_for_a_long_value() {
    let sim = Sim::new(Profile::V13);
    let c = client(&sim);
    for (len, calls) in [
        (1, 1),
        (GET_INITIAL_CAPACITY, 1),
        (GET_INITIAL_CAPACITY + 1, 2),
        (abi::VALUE_MAX, 2),
    ] {
        let value: Vec<u8> = (0..len)
            .map(|i| u8::try_from(i * 7 % 256).unwrap())
            .collect();
        c.put(b"k", &value).unwrap();
        let before = sim.count(abi::IOC_GET);
        assert_eq!(c.get(b"k").unwrap().unwrap(), value);
        assert_eq!(sim.count(abi::IOC_GET) - before, calls, "{len}-byte value");
    }
}

#[test]
fn get_keeps_up_with_a_value_that_grows_between_calls() {
    let sim = Arc::new(Sim {
        grow_on_get: 10,
        ..Arc::into_inner(Sim::new(Profile::Readme)).unwrap()
    });
    let c = client(&sim);
    c.put(b"k", &[b'v'; GET_INITIAL_CAPACITY]).unwrap();
    let got = c.get(b"k").unwrap().unwrap();
    // 4096 + 10 > 4096: ERANGE; 4106 + 10 > 4106: ERANGE; the largest room fits.
    assert_eq!(got.len(), GET_INITIAL_CAPACITY + 30);
    assert_eq!(sim.count(abi::IOC_GET), 3);
}

fn keys(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("key{i:03}").into_bytes()).collect()
}

#[test]
fn range_pages_continue_in_order() {
    let sim = Sim::new(Profile::Readme);
    let c = client(&sim);
    for k in keys(50) {
        c.put(&k, &k).unwrap();
    }
    let got: Vec<_> = c.scan().max_count(10).map(Result::unwrap).collect();
    let want: Vec<_> = keys(50).into_iter().map(|k| (k.clone(), k)).collect();
    assert_eq!(got, want);
    assert_eq!(sim.count(abi::IOC_RANGE), 5, "the fifth page says no more");

    let before = sim.count(abi::IOC_RANGE);
    let got: Vec<_> = c.scan().max_count(3).limit(7).map(Result::unwrap).collect();
    assert_eq!(got, want[..7]);
    assert_eq!(sim.count(abi::IOC_RANGE) - before, 3, "3 + 3 + 1");

    let got: Vec<_> = c
        .scan()
        .after("key010")
        .through("key012")
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(got, keys(13)[11..]);
    let before = sim.count(abi::IOC_RANGE);
    assert_eq!(c.scan().to("").count(), 0);
    assert_eq!(
        sim.count(abi::IOC_RANGE),
        before,
        "nothing is before the empty key"
    );
}

#[test]
fn range_grows_its_buffer_for_a_large_record() {
    let sim = Sim::new(Profile::V13);
    let c = client(&sim);
    let big = vec![7u8; abi::VALUE_MAX];
    for k in [b"a", b"b", b"c"] {
        c.put(k, &big).unwrap();
    }
    c.put(&[b'z'; abi::KEY_MAX], &big).unwrap();
    let got: Vec<_> = c.scan().capacity(64).map(Result::unwrap).collect();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|(_, v)| *v == big));
    // An ERANGE to grow for "a", one record per request (a second never fits), and one
    // more ERANGE for the 512-byte key's larger entry.
    assert_eq!(sim.count(abi::IOC_RANGE), 6);
    // An inclusive end of 512 bytes has no successor: the client stops by itself.
    let got: Vec<_> = c
        .scan()
        .through([b'z'; abi::KEY_MAX])
        .map(|r| r.unwrap().0.len())
        .collect();
    assert_eq!(got, [1, 1, 1, abi::KEY_MAX]);
    let e = c
        .scan()
        .from([b'z'; abi::KEY_MAX + 1])
        .next()
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, Error::Request(_)), "{e}");
}

/// The client checks the order of what RANGE returns: a device that repeats or reorders
/// keys is refused with EPROTO, not followed into a loop.
#[test]
fn range_pages_out_of_order_are_refused() {
    let sim = Arc::new(Sim {
        range_reversed: true,
        ..Arc::into_inner(Sim::new(Profile::Readme)).unwrap()
    });
    let c = client(&sim);
    for k in keys(3) {
        c.put(&k, b"v").unwrap();
    }
    let got: Vec<_> = c.scan().collect();
    assert_eq!(got.len(), 1, "one error, then nothing");
    let e = got.into_iter().next().unwrap().unwrap_err();
    assert!(
        matches!(&e, Error::Protocol(ReplyError::KeyOutOfOrder { key }) if key == b"key001"),
        "{e}"
    );
    assert_eq!(e.errno(), libc::EPROTO);
}

#[test]
fn prefix_scans_take_exactly_the_prefix() {
    let sim = Sim::new(Profile::V13);
    let c = client(&sim);
    for k in [
        &b"a"[..],
        b"ab",
        b"ab\0",
        b"ab\xff",
        b"ab\xff\xff",
        b"ac",
        b"\xff",
        b"\xff\xff",
    ] {
        c.put(k, b"v").unwrap();
    }
    let keys_of =
        |prefix: &[u8]| -> Vec<Vec<u8>> { c.scan().prefix(prefix).map(|r| r.unwrap().0).collect() };
    let want: Vec<&[u8]> = vec![b"ab", b"ab\0", b"ab\xff", b"ab\xff\xff"];
    assert_eq!(keys_of(b"ab"), want);
    assert_eq!(keys_of(b"ab\xff"), [&b"ab\xff"[..], b"ab\xff\xff"]);
    assert_eq!(keys_of(b"\xff"), [&b"\xff"[..], b"\xff\xff"]);
    assert_eq!(keys_of(b"").len(), 8);
    assert!(keys_of(b"b").is_empty());
    assert!(c.exists(b"ab\0").unwrap());
    assert!(!c.exists(b"ab\0\0").unwrap());
}

fn model_range(
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    start: &Bound<Vec<u8>>,
    end: &Bound<Vec<u8>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .filter(|(k, _)| match start {
            Bound::Unbounded => true,
            Bound::Included(s) => *k >= s,
            Bound::Excluded(s) => *k > s,
        })
        .filter(|(k, _)| match end {
            Bound::Unbounded => true,
            Bound::Included(e) => *k <= e,
            Bound::Excluded(e) => *k < e,
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    let key = prop::collection::vec(prop::sample::select(b"ab\0".to_vec()), 0..4);
    prop_oneof![
        Just(Bound::Unbounded),
        key.clone().prop_map(Bound::Included),
        key.prop_map(Bound::Excluded),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the bounds, page size and limit: the records of the model, in order.
    #[test]
    fn range_matches_a_model(
        records in prop::collection::btree_map(
            prop::collection::vec(prop::sample::select(b"ab\0".to_vec()), 1..4),
            prop::collection::vec(any::<u8>(), 1..300),
            0..30,
        ),
        start in bound(),
        end in bound(),
        max_count in 0u32..5,
        limit in prop::option::of(0usize..20),
        capacity in 16usize..400,
    ) {
        let sim = Sim::new(Profile::Readme);
        let c = client(&sim);
        for (k, v) in &records {
            c.put(k, v).unwrap();
        }
        let mut range = c
            .range(start.as_ref().map(Vec::as_slice), end.as_ref().map(Vec::as_slice))
            .max_count(max_count)
            .capacity(capacity);
        if let Some(l) = limit {
            range = range.limit(l);
        }
        let got: Vec<_> = range.collect::<Result<_>>().unwrap();
        let mut want = model_range(&records, &start, &end);
        want.truncate(limit.unwrap_or(usize::MAX));
        prop_assert_eq!(got, want);
    }
}

#[test]
fn errors_map_errnos_and_read_well() {
    for (errno, want) in [
        (Errno::ENOENT, "no such key"),
        (
            Errno::EINVAL,
            "invalid argument: the device refused the request (EINVAL)",
        ),
        (Errno::ENOSPC, "no space left on the store's device"),
        (Errno::EIO, "Input/output error (os error 5)"),
    ] {
        let e = Error::from_errno(errno);
        assert_eq!(e.errno(), errno as i32);
        assert_eq!(e.to_string(), want);
    }
    let e = Error::from_errno(Errno::ENOTTY);
    assert!(e.to_string().contains("is it hpkvd's /dev/hpkv?"));
    let io: io::Error = Error::NoSpace.into();
    assert_eq!(io.raw_os_error(), None);
    assert_eq!(io.kind(), io::ErrorKind::StorageFull);
}

#[test]
fn open_fails_cleanly_on_what_is_not_hpkv() {
    let e = Client::open("/nonexistent/hpkv").unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT);
    assert!(matches!(e, Error::Io(_)));
    // /dev/null answers ENOTTY to HPKV_IOC_STATS: not hpkvd's device.
    let e = Client::open("/dev/null").unwrap_err();
    assert!(matches!(e, Error::Unsupported), "{e}");
}

#[test]
fn info_comes_through_the_retry_protocol() {
    for profile in both() {
        let sim = Sim::new(profile);
        let info = client(&sim).info().unwrap();
        assert_eq!(
            (info.name.as_str(), info.abi_profile),
            ("sim", profile.number())
        );
        assert_eq!(sim.count(abi::IOC_INFO), 1);
    }
}

#[test]
fn get_answers_from_the_view_of_its_node_and_asks_the_device_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.view");
    let mut config = hpkv_view::ViewConfig::new(64, 4096, 4096);
    config.device = 42;
    let mut w = hpkv_view::ViewWriter::create(&path, &config).unwrap();
    w.upsert(b"cached", 1, Some(b"from the view"), 13).unwrap();
    w.upsert(b"not-cached", 2, None, 10).unwrap();
    w.publish().unwrap();
    let sim = Sim::new(Profile::Readme);
    {
        let mut store = sim.store.lock().unwrap();
        store.insert(b"cached".to_vec(), b"from the device".to_vec());
        store.insert(b"not-cached".to_vec(), b"device too".to_vec());
    }
    let with_view = |rdev| Client {
        view: view::ViewLink::at(path.clone(), rdev),
        ..client(&sim)
    };
    let c = with_view(42);
    assert!(c.has_view());
    assert_eq!(c.get(b"cached").unwrap().unwrap(), b"from the view");
    assert_eq!(c.get(b"absent").unwrap(), None);
    assert_eq!(sim.count(abi::IOC_GET), 0, "the view answered both");
    assert_eq!(c.get(b"not-cached").unwrap().unwrap(), b"device too");
    assert_eq!(sim.count(abi::IOC_GET), 1);
    let counted = c.view_counters();
    assert_eq!((counted.hits, counted.misses, counted.device), (1, 1, 1));

    let c = c.without_view();
    assert!(!c.has_view());
    assert_eq!(c.get(b"cached").unwrap().unwrap(), b"from the device");
    let other_node = with_view(43);
    assert!(!other_node.has_view(), "a view of another node");
    assert_eq!(
        other_node.get(b"cached").unwrap().unwrap(),
        b"from the device"
    );

    let c = with_view(42);
    drop(w); // the daemon exited: its view is dead
    assert_eq!(c.get(b"cached").unwrap().unwrap(), b"from the device");
    assert_eq!(c.get(b"absent").unwrap(), None);
    assert_eq!(c.view_counters().device, 2);
}

#[test]
fn put_batch_stores_every_record_in_one_call() {
    for profile in both() {
        let sim = Sim::new(profile);
        let hpkv = client(&sim);
        assert!(hpkv.supports_put_batch().unwrap());
        let big = vec![7u8; abi::VALUE_MAX];
        let key_max = [b'k'; abi::KEY_MAX];
        let records: Vec<(&[u8], &[u8])> = vec![
            (b"a", b"1"),
            (b"b\0:\n", b"2\0"),
            (&key_max, &big),
            (b"a", b"3"),
        ];
        assert_eq!(hpkv.put_batch(&records).unwrap(), 4);
        assert_eq!(sim.count(abi::IOC_PUT_BATCH), 2, "the probe and the batch");
        assert_eq!(hpkv.get(b"a").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(hpkv.get(b"b\0:\n").unwrap().as_deref(), Some(&b"2\0"[..]));
        assert_eq!(hpkv.get(&key_max).unwrap(), Some(big.clone()));
        assert_eq!(hpkv.put_batch(&[]).unwrap(), 0);
        assert_eq!(
            sim.count(abi::IOC_PUT_BATCH),
            2,
            "an empty batch is not sent"
        );
        // Too much for one request: refused before any call.
        let too_much: Vec<(&[u8], &[u8])> = vec![(b"k", &big); 2];
        assert!(matches!(
            hpkv.put_batch(&too_much),
            Err(Error::Request(RequestError::BatchSize { .. }))
        ));
        assert!(matches!(
            hpkv.put_batch(&[(b"", b"v")]),
            Err(Error::Request(RequestError::KeyLength { .. }))
        ));
        assert_eq!(sim.count(abi::IOC_PUT_BATCH), 2);
        // Packed to the limit: the most small records one request carries.
        let mut batch = abi::PutBatch::new();
        let mut n = 0u32;
        while batch.push(&n.to_be_bytes(), b"v").unwrap() {
            n += 1;
        }
        assert_eq!(hpkv.put_packed(&batch).unwrap(), batch.count());
        assert_eq!(hpkv.stats().unwrap().records, u64::from(n) + 3);
    }
}

#[test]
fn an_older_daemon_without_batches_answers_unsupported() {
    let sim = Arc::new(Sim {
        no_batch: true,
        ..Arc::into_inner(Sim::new(Profile::Readme)).unwrap()
    });
    let hpkv = client(&sim);
    assert!(!hpkv.supports_put_batch().unwrap());
    assert!(matches!(
        hpkv.put_batch(&[(b"a", b"1")]),
        Err(Error::Unsupported)
    ));
    assert_eq!(hpkv.get(b"a").unwrap(), None);
}
