//! Reporting applied writes to the embedding program (hpkvd's shared view).
//!
//! An [`Observer`] set in [`crate::Config::observer`] is called by the committing thread (the
//! leader of the moment, holding the committer: one call at a time, in order) once per
//! batch, with the batch's changes in sequence order, **after** they are durable (as the
//! durability mode says) and in the index, and **before** any writer of the batch is
//! answered. A PURGE is reported the same way, after it took effect and before it is
//! answered. So whatever the observer publishes is in place before the acknowledgement goes
//! out, and it never runs ahead of the index: a GET through the engine at any later instant
//! sees the reported change or a later one.

use std::fmt;
use std::sync::Arc;

/// One write the committer applied.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Change<'a> {
    /// `key` now holds `value`, written by the write with sequence number `seq`. An append
    /// reports the whole resulting value.
    Put {
        /// The key.
        key: &'a [u8],
        /// The write's sequence number.
        seq: u64,
        /// The key's whole value now.
        value: &'a Arc<[u8]>,
    },
    /// `key` was deleted by the write with sequence number `seq`.
    Delete {
        /// The key.
        key: &'a [u8],
        /// The delete's sequence number.
        seq: u64,
    },
    /// Every record was removed (PURGE); later writes carry larger sequence numbers.
    Purge,
}

/// A live key as [`crate::Engine::for_each_key`] lists it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct LiveKey<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The sequence number of the write that stored its value.
    pub seq: u64,
    /// The length of its value.
    pub value_len: u32,
    /// The value, if the engine's value cache holds it.
    pub cached: Option<&'a Arc<[u8]>>,
}

/// The live keys of the store, for [`Applied::for_each_key`].
pub(crate) trait KeySource {
    /// Calls `f` for every live key, in key order.
    fn for_each_key(&self, f: &mut dyn FnMut(LiveKey<'_>));
}

/// A batch as the committer applied it, and the store's totals after it.
pub struct Applied<'a> {
    /// The changes, in sequence order.
    pub changes: &'a [Change<'a>],
    /// Live records after the batch.
    pub records: u64,
    /// Sum of the live values' lengths after the batch.
    pub value_bytes: u64,
    /// The device's size in bytes.
    pub device_bytes: u64,
    pub(crate) keys: &'a dyn KeySource,
}

impl Applied<'_> {
    /// Calls `f` for every live key as the index holds it now (this batch included), like
    /// [`crate::Engine::for_each_key`]. Safe to call from [`Observer::applied`]: no write
    /// can change the index meanwhile, since the committer is the caller.
    pub fn for_each_key(&self, mut f: impl FnMut(LiveKey<'_>)) {
        self.keys.for_each_key(&mut f);
    }
}

/// Told about every applied write, by the committing thread, before it is acknowledged.
///
/// It runs inside the write path: every write waits for it, so it must be quick, and it must
/// not submit writes or wait for one (the committer would wait for itself).
pub trait Observer: Send + Sync {
    /// One batch (or one PURGE), in sequence order, durable and in the index, not yet
    /// acknowledged.
    fn applied(&self, batch: &Applied<'_>);
}

/// A shared [`Observer`] for [`crate::Config`].
#[derive(Clone)]
pub struct ObserverSink(pub Arc<dyn Observer>);

impl fmt::Debug for ObserverSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObserverSink")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::{Applied, Change, Observer, ObserverSink};
    use crate::faulty::FaultyDevice;
    use crate::{BlockDevice, Config, Engine, WriteOp};

    /// What the observer was told, in order: (key, seq, value) with `None` for a delete and
    /// an empty key for a purge; and the totals of the last batch.
    type Seen = (Vec<u8>, u64, Option<Vec<u8>>);

    #[derive(Default)]
    struct Log {
        changes: Mutex<Vec<Seen>>,
        totals: Mutex<(u64, u64)>,
    }

    impl Observer for Log {
        fn applied(&self, batch: &Applied<'_>) {
            let mut log = self.changes.lock();
            for c in batch.changes {
                log.push(match *c {
                    Change::Put { key, seq, value } => (key.to_vec(), seq, Some(value.to_vec())),
                    Change::Delete { key, seq } => (key.to_vec(), seq, None),
                    Change::Purge => (Vec::new(), 0, None),
                });
            }
            *self.totals.lock() = (batch.records, batch.value_bytes);
        }
    }

    fn open(log: &Arc<Log>) -> Engine {
        let dev: Arc<dyn BlockDevice> = Arc::new(FaultyDevice::new(8 << 20, 4096));
        let config = Config {
            observer: Some(ObserverSink(log.clone())),
            ..Config::default()
        };
        Engine::open(dev, config).unwrap()
    }

    #[test]
    fn every_change_is_reported_in_order_before_it_is_acknowledged() {
        let log = Arc::new(Log::default());
        let engine = open(&log);
        engine.put(b"a", b"1").unwrap();
        engine.append(b"a", b"23").unwrap();
        engine.put(b"b", b"xy").unwrap();
        engine.delete(b"b").unwrap();
        assert!(
            engine.delete(b"b").is_err(),
            "a refused write is not reported"
        );
        // Many writes in flight at once (batches): each acknowledgement finds its change
        // already reported, with the whole value.
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 0..200u32 {
            let key = format!("k{}", i % 7).into_bytes();
            let (tx, log) = (tx.clone(), log.clone());
            let expect = key.clone();
            engine.submit(
                WriteOp::Append {
                    key: key.into(),
                    suffix: Box::new(*b"x"),
                },
                Box::new(move |r| {
                    r.unwrap();
                    let seen = log.changes.lock().iter().any(|(k, _, _)| *k == expect);
                    tx.send(seen).unwrap();
                }),
            );
        }
        for _ in 0..200 {
            assert!(rx.recv().unwrap(), "acknowledged before it was reported");
        }
        engine.purge().unwrap();
        engine.put(b"c", b"after").unwrap();

        let changes = log.changes.lock().clone();
        assert_eq!(changes.len(), 4 + 200 + 2);
        assert_eq!(
            changes[0],
            (b"a".to_vec(), changes[0].1, Some(b"1".to_vec()))
        );
        assert_eq!(
            changes[1].2.as_deref(),
            Some(&b"123"[..]),
            "an append reports the whole value"
        );
        assert_eq!(changes[3], (b"b".to_vec(), changes[3].1, None));
        let seqs: Vec<u64> = changes
            .iter()
            .filter(|c| !c.0.is_empty())
            .map(|c| c.1)
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "sequence numbers out of order: {seqs:?}"
        );
        // The last append of each of the 7 keys carries the full length.
        let last_k0 = changes.iter().rev().find(|c| c.0 == b"k0").unwrap();
        assert_eq!(
            last_k0.2.as_ref().unwrap().len(),
            29,
            "k0 was appended 29 times"
        );
        assert_eq!(changes[204], (Vec::new(), 0, None), "the purge");
        assert_eq!(*log.totals.lock(), (1, 5));
        // The versioned get names the seq the observer was told.
        let got = engine.get_versioned(b"c").unwrap().unwrap();
        assert_eq!((got.seq, &got.value[..]), (changes[205].1, &b"after"[..]));
    }

    #[test]
    fn for_each_key_lists_every_live_key_across_chunks() {
        let log = Arc::new(Log::default());
        let engine = open(&log);
        for i in 0..2500u32 {
            engine
                .put(format!("key{i:05}").as_bytes(), &[b'v'; 3])
                .unwrap();
        }
        engine.delete(b"key00007").unwrap();
        let mut keys = Vec::new();
        let mut cached = 0;
        engine.for_each_key(|k| {
            assert_eq!(k.value_len, 3);
            if let Some(v) = k.cached {
                assert_eq!(&v[..], b"vvv");
                cached += 1;
            }
            keys.push((k.key.to_vec(), k.seq));
        });
        assert!(cached > 0, "the cache holds written values");
        assert_eq!(keys.len(), 2499);
        assert!(keys.windows(2).all(|w| w[0].0 < w[1].0), "not in key order");
        assert!(!keys.iter().any(|(k, _)| k == b"key00007"));
        let seq = engine.get_versioned(b"key02499").unwrap().unwrap().seq;
        assert_eq!(keys.last().unwrap(), &(b"key02499".to_vec(), seq));
    }
}
