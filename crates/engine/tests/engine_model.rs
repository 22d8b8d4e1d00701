//! Model-based tests of the engine: random operation sequences, checked step by step
//! against a `BTreeMap`, with closes and reopens, compaction and purges in between.

use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

use hpkv_engine::faulty::FaultyDevice;
use hpkv_engine::{BlockDevice, Config, Durability, Engine, Error};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, usize),
    Append(u8, usize),
    Delete(u8),
    Get(u8),
    Scan(u8, u8),
    Compact,
    Reopen { cache: bool },
    Purge,
}

fn key(k: u8) -> Vec<u8> {
    // Keys of varied lengths that share prefixes, so order and prefixes matter.
    let mut v = format!("key{}", k % 16).into_bytes();
    v.extend(std::iter::repeat_n(b'x', (k / 16) as usize));
    v
}

fn value(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(seed.wrapping_mul(31).wrapping_add(i * 7) % 251).expect("below 251"))
        .collect()
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let len = prop_oneof![8 => 1usize..300, 2 => 300usize..20_000, 1 => 100_000usize..=102_400];
    prop_oneof![
        30 => (any::<u8>(), len.clone()).prop_map(|(k, l)| Op::Put(k % 48, l)),
        8 => (any::<u8>(), 1usize..3000).prop_map(|(k, l)| Op::Append(k % 48, l)),
        12 => any::<u8>().prop_map(|k| Op::Delete(k % 48)),
        15 => any::<u8>().prop_map(|k| Op::Get(k % 48)),
        4 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Scan(a % 48, b % 48)),
        3 => Just(Op::Compact),
        3 => any::<bool>().prop_map(|cache| Op::Reopen { cache }),
        1 => Just(Op::Purge),
    ]
}

fn config(cache: bool, durability: Durability) -> Config {
    Config {
        durability,
        cache_bytes: if cache { 256 << 10 } else { 0 },
        background_compaction: false,
        ..Config::default()
    }
}

fn live_bytes(model: &BTreeMap<Vec<u8>, Vec<u8>>) -> usize {
    model.iter().map(|(k, v)| 24 + k.len() + v.len()).sum()
}

fn scan_all(engine: &Engine, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    engine
        .scan(start, end, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
fn run(ops: Vec<Op>, durability: Durability, device_bytes: u64) {
    let dev: Arc<dyn BlockDevice> = Arc::new(FaultyDevice::new(device_bytes, 512));
    let mut engine = Engine::open(dev.clone(), config(true, durability)).unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let capacity = usize::try_from(device_bytes).expect("a 64-bit usize");
    for (step, op) in ops.into_iter().enumerate() {
        let ctx = format!("step {step}: {op:?}");
        match op {
            Op::Put(k, len) => {
                let (k, v) = (key(k), value(step, len));
                match engine.put(&k, &v) {
                    Ok(()) => {
                        model.insert(k, v);
                    }
                    Err(Error::NoSpace) => assert!(
                        live_bytes(&model) + v.len() > capacity / 4,
                        "{ctx}: ENOSPC with only {} live bytes",
                        live_bytes(&model)
                    ),
                    Err(e) => panic!("{ctx}: {e}"),
                }
            }
            Op::Append(k, len) => {
                let (k, suffix) = (key(k), value(step, len));
                let want: Vec<u8> = model
                    .get(&k)
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .chain(suffix.clone())
                    .collect();
                match engine.append(&k, &suffix) {
                    Ok(()) => {
                        assert!(
                            want.len() <= 102_400,
                            "{ctx}: append past the limit accepted"
                        );
                        model.insert(k, want);
                    }
                    Err(Error::TooLarge) => assert!(
                        want.len() > 102_400,
                        "{ctx}: EMSGSIZE for {} bytes",
                        want.len()
                    ),
                    Err(Error::NoSpace) => {
                        assert!(live_bytes(&model) > capacity / 4, "{ctx}: ENOSPC");
                    }
                    Err(e) => panic!("{ctx}: {e}"),
                }
            }
            Op::Delete(k) => {
                let k = key(k);
                match engine.delete(&k) {
                    Ok(()) => assert!(model.remove(&k).is_some(), "{ctx}: deleted a missing key"),
                    Err(Error::NotFound) => {
                        assert!(!model.contains_key(&k), "{ctx}: ENOENT for a present key");
                    }
                    Err(Error::NoSpace) => {
                        assert!(live_bytes(&model) > capacity / 4, "{ctx}: ENOSPC");
                    }
                    Err(e) => panic!("{ctx}: {e}"),
                }
            }
            Op::Get(k) => {
                let k = key(k);
                let got = engine.get(&k).unwrap().map(|v| v.to_vec());
                assert_eq!(got.as_ref(), model.get(&k), "{ctx}");
            }
            Op::Scan(a, b) => {
                let (a, b) = (key(a), key(b));
                let got = scan_all(&engine, Bound::Included(&a), Bound::Excluded(&b));
                let want: Vec<(Vec<u8>, Vec<u8>)> = if a < b {
                    model
                        .range(a.clone()..b.clone())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                } else {
                    vec![]
                };
                assert_eq!(got, want, "{ctx}");
            }
            Op::Compact => {
                engine.compact_now(true).unwrap();
                engine.check_invariants();
                engine
                    .verify_against_disk()
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            }
            Op::Reopen { cache } => {
                engine.close().unwrap();
                engine = Engine::open(dev.clone(), config(cache, durability)).unwrap();
                engine.check_invariants();
                engine
                    .verify_against_disk()
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let all = scan_all(&engine, Bound::Unbounded, Bound::Unbounded);
                let want: Vec<(Vec<u8>, Vec<u8>)> =
                    model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                assert_eq!(all, want, "{ctx}: contents after reopen");
            }
            Op::Purge => {
                engine.purge().unwrap();
                model.clear();
            }
        }
        let st = engine.stats();
        assert_eq!(st.records, model.len() as u64, "{ctx}: record count");
        assert_eq!(
            st.disk_usage_bytes,
            model.values().map(|v| v.len() as u64).sum::<u64>(),
            "{ctx}: disk usage"
        );
    }
    engine.check_invariants();
    engine.verify_against_disk().unwrap();
    engine.close().unwrap();
    // One more open, scanning the log instead of loading the snapshot.
    let engine = Engine::open(
        dev,
        Config {
            force_read_disk: true,
            ..config(false, durability)
        },
    )
    .unwrap();
    let all = scan_all(&engine, Bound::Unbounded, Bound::Unbounded);
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(all, want, "contents after a full scan");
    engine.check_invariants();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn engine_matches_model_sync(ops in prop::collection::vec(op_strategy(), 1..250)) {
        run(ops, Durability::Sync, 4 << 20);
    }

    #[test]
    fn engine_matches_model_write_behind(ops in prop::collection::vec(op_strategy(), 1..250)) {
        run(ops, Durability::MODULE_WRITE_BEHIND, 4 << 20);
    }

    /// A device barely larger than the minimum: ENOSPC, reserves and compaction under pressure.
    #[test]
    fn engine_matches_model_on_a_tiny_device(ops in prop::collection::vec(op_strategy(), 1..300)) {
        run(ops, Durability::Sync, hpkv_engine::format::min_device_size(512) + (64 << 10));
    }
}

#[test]
fn a_thousand_small_records_survive_reopen_and_compaction() {
    let dev: Arc<dyn BlockDevice> = Arc::new(FaultyDevice::new(16 << 20, 4096));
    let engine = Engine::open(dev.clone(), config(true, Durability::Sync)).unwrap();
    for i in 0..1000u32 {
        engine
            .put(format!("k{i:05}").as_bytes(), format!("v{i}").as_bytes())
            .unwrap();
    }
    for i in (0..1000u32).step_by(2) {
        engine.delete(format!("k{i:05}").as_bytes()).unwrap();
    }
    engine.compact_now(true).unwrap();
    engine.close().unwrap();
    let engine = Engine::open(dev, config(false, Durability::Sync)).unwrap();
    let all = scan_all(&engine, Bound::Unbounded, Bound::Unbounded);
    assert_eq!(all.len(), 500);
    assert_eq!(all[0], (b"k00001".to_vec(), b"v1".to_vec()));
    engine.check_invariants();
}
