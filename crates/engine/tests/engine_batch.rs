//! Batches of puts (`Engine::put_many`, `Engine::submit_puts`): one group commit with one
//! flush, records applied in order, a malformed batch stores nothing, a full device stores
//! the first records only, the observer and the counters see every record. (Crashes in the
//! middle of a batch are in `engine_crash.rs`'s sweeps, whose workloads hold batches.)

use std::sync::{Arc, Mutex};

use hpkv_engine::faulty::FaultyDevice;
use hpkv_engine::{
    Applied, BlockDevice, Change, Config, Engine, Error, Observer, ObserverSink, PUTS_BYTES_MAX,
    PUTS_RECORDS_MAX,
};

const BLOCK: u32 = 4096;

/// A put the observer was told about: key, sequence number, value.
type SeenPut = (Vec<u8>, u64, Vec<u8>);

/// The puts the observer was told about, in order.
#[derive(Default)]
struct Seen(Mutex<Vec<SeenPut>>);

impl Observer for Seen {
    fn applied(&self, batch: &Applied<'_>) {
        let mut seen = self.0.lock().unwrap();
        for change in batch.changes {
            if let Change::Put { key, seq, value } = *change {
                seen.push((key.to_vec(), seq, value.to_vec()));
            }
        }
    }
}

fn open(device_bytes: u64, seen: Option<Arc<Seen>>) -> (Arc<FaultyDevice>, Engine) {
    let dev = Arc::new(FaultyDevice::new(device_bytes, BLOCK));
    let config = Config {
        observer: seen.map(|s| ObserverSink(s as Arc<dyn Observer>)),
        background_compaction: false,
        ..Config::default()
    };
    let as_dev: Arc<dyn BlockDevice> = dev.clone();
    (dev, Engine::open(as_dev, config).unwrap())
}

fn records(n: usize, value_len: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let key = format!("key{i:05}").into_bytes();
            let value = vec![u8::try_from(i % 251).unwrap(); value_len];
            (key, value)
        })
        .collect()
}

#[test]
fn a_batch_is_one_flush_and_every_record_is_seen() {
    let seen = Arc::new(Seen::default());
    let (dev, engine) = open(64 << 20, Some(seen.clone()));
    let batch = records(2000, 40);
    let (flushes, puts) = (engine.stats().device_flushes, engine.stats().puts);
    let flushes_on_device = dev.counts().1;
    assert_eq!(engine.put_many(&batch).unwrap(), 2000);
    let stats = engine.stats();
    assert_eq!(stats.device_flushes - flushes, 1, "one flush for the batch");
    assert_eq!(dev.counts().1 - flushes_on_device, 1);
    assert_eq!(stats.puts - puts, 2000, "puts are counted per record");
    assert_eq!(stats.records, 2000);
    for (k, v) in &batch {
        assert_eq!(engine.get(k).unwrap().as_deref(), Some(v.as_slice()));
    }
    let seen = seen.0.lock().unwrap();
    assert_eq!(
        seen.len(),
        2000,
        "the observer (the shared view) saw every record"
    );
    assert!(seen.windows(2).all(|w| w[0].1 + 1 == w[1].1), "in order");
    for ((k, _, v), (want_k, want_v)) in seen.iter().zip(&batch) {
        assert_eq!((k, v), (want_k, want_v));
    }
    drop(seen);
    engine.verify_against_disk().unwrap();
}

#[test]
fn later_duplicates_win_and_a_malformed_batch_stores_nothing() {
    let (_, engine) = open(16 << 20, None);
    let stored = engine
        .put_many(&[(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
        .unwrap();
    assert_eq!(stored, 3);
    assert_eq!(engine.get(b"a").unwrap().as_deref(), Some(&b"3"[..]));
    let before = engine.stats();
    let empty: [(&[u8], &[u8]); 0] = [];
    let long_key = vec![b'k'; 513];
    let big = vec![0u8; 102_401];
    let bad: Vec<Vec<(&[u8], &[u8])>> = vec![
        empty.to_vec(),
        vec![(b"c", b"1"), (b"", b"2")],
        vec![(b"c", b"1"), (b"d", b"")],
        vec![(b"c", b"1"), (&long_key, b"2")],
        vec![(b"c", b"1"), (b"d", &big)],
    ];
    for batch in bad {
        assert!(
            matches!(engine.put_many(&batch), Err(Error::Invalid(_))),
            "{} records",
            batch.len()
        );
    }
    let too_many = records(PUTS_RECORDS_MAX + 1, 1);
    assert!(matches!(engine.put_many(&too_many), Err(Error::Invalid(_))));
    let too_big = records(PUTS_BYTES_MAX / 100_000 + 1, 100_000);
    assert!(matches!(engine.put_many(&too_big), Err(Error::Invalid(_))));
    let after = engine.stats();
    assert_eq!((after.records, after.puts), (before.records, before.puts));
    assert_eq!(engine.get(b"c").unwrap(), None);
}

#[test]
fn a_full_device_stores_the_first_records_of_a_batch() {
    let (_, engine) = open(4 << 20, None);
    let batch = records(10, 100_000);
    let mut stored_in_all = 0;
    let mut last = 0;
    for round in 0..10 {
        let keyed: Vec<_> = batch
            .iter()
            .map(|(k, v)| ([k.as_slice(), format!("-{round}").as_bytes()].concat(), v))
            .collect();
        match engine.put_many(&keyed) {
            Ok(n) => {
                assert!((1..=10).contains(&n));
                for (i, (k, v)) in keyed.iter().enumerate() {
                    let got = engine.get(k).unwrap();
                    if i < n {
                        assert_eq!(got.as_deref(), Some(v.as_slice()), "record {i} of {n}");
                    } else {
                        assert_eq!(got, None, "record {i} after the {n} stored");
                    }
                }
                stored_in_all += n;
                last = n;
            }
            Err(Error::NoSpace) => {
                assert!(last < 10, "ENOSPC only once a batch was cut short");
                let first = engine.get(&keyed[0].0).unwrap();
                assert_eq!(first, None, "ENOSPC stores nothing");
                break;
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    assert!(last < 10, "the device filled");
    assert_eq!(
        engine.stats().records,
        u64::try_from(stored_in_all).unwrap()
    );
    engine.verify_against_disk().unwrap();
}

#[test]
fn concurrent_batches_and_puts_share_group_commits() {
    let (_, engine) = open(64 << 20, None);
    let engine = Arc::new(engine);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let engine = engine.clone();
            scope.spawn(move || {
                for round in 0..20 {
                    let batch: Vec<_> = records(50, 30)
                        .into_iter()
                        .map(|(k, v)| ([&k[..], format!("-{t}").as_bytes()].concat(), v))
                        .collect();
                    assert_eq!(engine.put_many(&batch).unwrap(), 50);
                    let key = format!("single-{t}-{round}");
                    engine.put(key.as_bytes(), b"x").unwrap();
                }
            });
        }
    });
    assert_eq!(engine.stats().records, 4 * 50 + 4 * 20);
    engine.check_invariants();
    engine.verify_against_disk().unwrap();
}
