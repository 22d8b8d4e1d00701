//! Model test: random sequences of upserts (with and without values), fills (current and
//! stale), removals and purges, applied to a view and to a `BTreeMap`. After every step the
//! reader is asked about every key of the universe, and every answer must be allowed by the
//! model:
//! - `Hit { seq }` only with the model's current sequence number and value;
//! - `Miss` only for a key the model lacks, and only while the table is complete;
//! - `Unknown(NotCached)` only for a key the model has; `Unknown(Incomplete)` only while the
//!   table is incomplete; no other `Unknown` (nothing runs concurrently here).
//!
//! Two configurations: a *tight* one (12 keys of capacity, 2 KiB of keys, 2 KiB of values) where
//! evictions, overflow and rebuilds happen all the time, and a *roomy* one (no eviction, room for
//! every key) where the answers are exact: every key with its value installed hits, every key
//! the model lacks misses.

// Test data generators narrow numbers on purpose (key bytes, lengths); the model loop is
// one long function because each step's checks read best in one place.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines
)]

use std::collections::BTreeMap;

use hpkv_view::{Lookup, Unknown, ViewConfig, ViewReader, ViewWriter, VALUE_BYTES_MAX};
use proptest::prelude::*;

/// Keys of the lengths where word-wise code goes wrong (1, 7, 8, 9, ... 512), some sharing
/// prefixes or differing only in their last byte.
fn universe() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = [
        1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 33, 64, 100, 255, 511, 512,
    ]
    .iter()
    .map(|&n| (0..n).map(|i| (i * 13 + n) as u8).collect())
    .collect();
    keys.push(b"prefix".to_vec());
    keys.push(b"prefix-longer".to_vec());
    keys.push(b"same-len-a".to_vec());
    keys.push(b"same-len-b".to_vec());
    keys.push(vec![0]);
    keys.push(vec![0, 0]);
    keys
}

/// Keys never written: they must always miss (when the table is complete).
fn strangers() -> Vec<Vec<u8>> {
    vec![b"stranger".to_vec(), vec![0xff; 512], b"prefix-".to_vec()]
}

fn value(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

#[derive(Clone, Debug)]
enum Op {
    Upsert {
        key: usize,
        len: usize,
        with_value: bool,
    },
    /// A large value (arena pressure; not cached in the tight configuration).
    Big {
        key: usize,
    },
    Fill {
        key: usize,
    },
    FillStale {
        key: usize,
    },
    Remove {
        key: usize,
    },
    Clear,
}

fn op(keys: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (0..keys, 1..600usize, any::<bool>()).prop_map(|(key, len, with_value)| Op::Upsert { key, len, with_value }),
        30 => (0..keys, 1..80usize, any::<bool>()).prop_map(|(key, len, with_value)| Op::Upsert { key, len, with_value }),
        3 => (0..keys).prop_map(|key| Op::Big { key }),
        15 => (0..keys).prop_map(|key| Op::Fill { key }),
        5 => (0..keys).prop_map(|key| Op::FillStale { key }),
        20 => (0..keys).prop_map(|key| Op::Remove { key }),
        // Rare: a purge empties the ring, and the bugs worth finding need several laps.
        1 => Just(Op::Clear),
    ]
}

#[derive(Clone, Debug)]
struct Entry {
    seq: u64,
    value: Vec<u8>,
    /// Whether the view was given this version's value (and, roomy, still holds it).
    installed: bool,
}

fn run(config: &ViewConfig, roomy: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.view");
    let mut w = ViewWriter::create(&path, config).unwrap();
    w.publish().unwrap();
    let r = ViewReader::open(&path).unwrap();
    let keys = universe();
    let mut model: BTreeMap<usize, Entry> = BTreeMap::new();
    let mut seq = 0u64;
    let mut scratch = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        seq += 1;
        let mut expect_hit = None;
        match *op {
            Op::Upsert {
                key,
                len,
                with_value,
            } => {
                let v = value(seq, len);
                w.upsert(&keys[key], seq, with_value.then_some(&v[..]), len)
                    .unwrap();
                model.insert(
                    key,
                    Entry {
                        seq,
                        value: v,
                        installed: with_value,
                    },
                );
                if with_value {
                    expect_hit = Some(key);
                }
            }
            Op::Big { key } => {
                let len = VALUE_BYTES_MAX - (seq as usize % 3);
                let v = value(seq, len);
                w.upsert(&keys[key], seq, Some(&v), len).unwrap();
                model.insert(
                    key,
                    Entry {
                        seq,
                        value: v,
                        installed: roomy,
                    },
                );
            }
            Op::Fill { key } => {
                if let Some(e) = model.get_mut(&key) {
                    let filled = w.fill(&keys[key], e.seq, &e.value).unwrap();
                    if roomy {
                        prop_assert_eq!(
                            filled,
                            !e.installed,
                            "step {}: fill of key {} installed={}",
                            step,
                            key,
                            e.installed
                        );
                    }
                    e.installed |= filled;
                    if filled {
                        expect_hit = Some(key);
                    }
                } else {
                    prop_assert!(
                        !w.fill(&keys[key], seq, &value(seq, 5)).unwrap(),
                        "fill of an absent key"
                    );
                }
            }
            Op::FillStale { key } => {
                if let Some(e) = model.get(&key) {
                    if e.seq > 1 {
                        // A worker that read an older version: of the same length, and of
                        // another length (which fill must not even look at).
                        let stale = value(e.seq - 1, e.value.len());
                        prop_assert!(
                            !w.fill(&keys[key], e.seq - 1, &stale).unwrap(),
                            "a stale fill"
                        );
                        let len = if e.value.len() == VALUE_BYTES_MAX {
                            e.value.len() - 1
                        } else {
                            e.value.len() + 1
                        };
                        let stale = value(e.seq - 1, len);
                        prop_assert!(
                            !w.fill(&keys[key], e.seq - 1, &stale).unwrap(),
                            "a stale fill"
                        );
                    }
                }
            }
            Op::Remove { key } => {
                w.remove(&keys[key], seq).unwrap();
                model.remove(&key);
            }
            Op::Clear => {
                w.clear();
                model.clear();
            }
        }
        w.check_invariants();
        w.heartbeat(); // as the daemon does, so a slow run never makes the view stale
        let complete = w.is_complete();
        if roomy {
            prop_assert!(complete, "step {}: the roomy table lost a key", step);
        }
        for (i, key) in keys.iter().enumerate() {
            let answer = r.get(key, &mut scratch);
            let entry = model.get(&i);
            match (answer, entry) {
                (Lookup::Hit { seq }, Some(e)) => {
                    prop_assert_eq!(seq, e.seq, "step {}: key {} hit an old version", step, i);
                    prop_assert!(
                        scratch == e.value,
                        "step {}: key {} hit a wrong value",
                        step,
                        i
                    );
                }
                (Lookup::Hit { seq }, None) => {
                    return Err(TestCaseError::fail(format!(
                        "step {step}: key {i} is deleted but hit seq {seq}"
                    )));
                }
                (Lookup::Miss, e) => {
                    prop_assert!(e.is_none(), "step {}: key {} is live but missed", step, i);
                    prop_assert!(complete, "step {}: a miss from an incomplete table", step);
                }
                (Lookup::Unknown(Unknown::NotCached), e) => {
                    prop_assert!(
                        e.is_some(),
                        "step {}: key {} is absent but 'not cached'",
                        step,
                        i
                    );
                    if roomy {
                        prop_assert!(
                            !e.unwrap().installed,
                            "step {}: key {} lost its value",
                            step,
                            i
                        );
                    }
                }
                (Lookup::Unknown(Unknown::Incomplete), _) => {
                    prop_assert!(
                        !complete,
                        "step {}: 'incomplete' from a complete table",
                        step
                    );
                }
                (Lookup::Unknown(why), _) => {
                    return Err(TestCaseError::fail(format!(
                        "step {step}: key {i}: unexpected {why:?}"
                    )));
                }
            }
            if roomy && entry.is_some_and(|e| e.installed) {
                prop_assert!(
                    matches!(answer, Lookup::Hit { .. }),
                    "step {}: key {} must hit, got {:?}",
                    step,
                    i,
                    answer
                );
            }
            if complete && entry.is_none() {
                prop_assert_eq!(
                    answer,
                    Lookup::Miss,
                    "step {}: absent key {} must miss",
                    step,
                    i
                );
            }
            if expect_hit == Some(i) && complete {
                // Just written with its value, and small enough for the arena.
                let fits = key.len().next_multiple_of(8)
                    + entry.unwrap().value.len().next_multiple_of(8)
                    <= (config.value_arena_bytes / 8) as usize;
                if fits {
                    prop_assert!(
                        matches!(answer, Lookup::Hit { .. }),
                        "step {}: key {} was just written, got {:?}",
                        step,
                        i,
                        answer
                    );
                }
            }
        }
        for key in strangers() {
            let answer = r.get(&key, &mut scratch);
            let expected = if complete {
                Lookup::Miss
            } else {
                Lookup::Unknown(Unknown::Incomplete)
            };
            prop_assert_eq!(answer, expected, "step {}: a key never written", step);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn tight_view_answers_only_what_the_model_allows(ops in prop::collection::vec(op(universe().len()), 1..300)) {
        run(&ViewConfig::new(12, 2048, 1024), false, &ops)?;
    }

    #[test]
    fn roomy_view_answers_exactly(ops in prop::collection::vec(op(universe().len()), 1..200)) {
        // 64 keys of capacity, every key fits, and 32 MiB of values (sparse): 200 operations
        // never wrap the ring, so nothing is evicted.
        run(&ViewConfig::new(64, 8192, 32 << 20), true, &ops)?;
    }
}
