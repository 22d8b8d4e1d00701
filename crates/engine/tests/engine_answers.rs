//! Answers to writers go out after the committer's lock is let go: a slow answer (a CUSE
//! reply that wakes its writer) never stops the next batch, and every answer handed to the
//! answer thread is given before the engine closes. A lone writer never waits for a cohort,
//! and nobody does in write-behind mode.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use hpkv_engine::faulty::FaultyDevice;
use hpkv_engine::{BlockDevice, Config, Durability, Engine, WriteOp};

const BLOCK: u32 = 4096;
/// How long a test waits for an answer that must come (a hang fails, it does not block).
const ANSWER_WAIT: Duration = Duration::from_secs(20);

fn open(dev: &Arc<FaultyDevice>) -> Engine {
    open_with(dev, Durability::Sync)
}

fn open_with(dev: &Arc<FaultyDevice>, durability: Durability) -> Engine {
    let config = Config {
        background_compaction: false,
        durability,
        ..Config::default()
    };
    let as_dev: Arc<dyn BlockDevice> = dev.clone();
    Engine::open(as_dev, config).unwrap()
}

fn put(key: &str, value: &str) -> WriteOp {
    WriteOp::Put {
        key: key.as_bytes().into(),
        value: value.as_bytes().into(),
    }
}

/// Writer A's answer waits until writer B's write, submitted after A's answer began, is
/// acknowledged. Were answers given under the committer's lock, B could never be committed.
#[test]
fn a_slow_answer_does_not_hold_up_the_next_write() {
    let dev = Arc::new(FaultyDevice::new(16 << 20, BLOCK));
    let engine = Arc::new(open(&dev));
    let (a_answering_tx, a_answering_rx) = mpsc::channel::<()>();
    let (b_acked_tx, b_acked_rx) = mpsc::channel::<()>();
    let (a_result_tx, a_result_rx) = mpsc::channel();
    let e = engine.clone();
    // Detached: if the answer held the committer these threads would hang; the test fails.
    std::thread::spawn(move || {
        e.submit(
            put("a", "1"),
            Box::new(move |r| {
                a_answering_tx.send(()).unwrap();
                let b_acked = b_acked_rx.recv_timeout(ANSWER_WAIT).is_ok();
                a_result_tx.send((r, b_acked)).unwrap();
            }),
        );
    });
    a_answering_rx.recv_timeout(ANSWER_WAIT).unwrap();
    let e = engine.clone();
    std::thread::spawn(move || {
        e.submit(
            put("b", "2"),
            Box::new(move |r| {
                r.unwrap();
                b_acked_tx.send(()).unwrap();
            }),
        );
    });
    let (a, b_acked) = a_result_rx.recv_timeout(ANSWER_WAIT).unwrap();
    a.unwrap();
    assert!(b_acked, "B was not acknowledged while A's answer ran");
    assert_eq!(engine.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(engine.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
}

/// Many concurrent writers (so that batches are handed to the answer thread), then close at
/// once: every write is answered exactly once, and every acknowledged write is in the store
/// when it is opened again.
#[test]
fn every_write_is_answered_once_before_close_returns() {
    const WRITERS: usize = 8;
    const WRITES_EACH: usize = 200;
    let dev = Arc::new(FaultyDevice::new(64 << 20, BLOCK));
    let engine = Arc::new(open(&dev));
    let answered = Arc::new(AtomicUsize::new(0));
    let (acked_tx, acked_rx) = mpsc::channel::<String>();
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let (engine, answered, acked_tx) = (&engine, answered.clone(), acked_tx.clone());
            scope.spawn(move || {
                for i in 0..WRITES_EACH {
                    let key = format!("w{w}-{i}");
                    let (answered, acked_tx) = (answered.clone(), acked_tx.clone());
                    let k = key.clone();
                    // Not waiting for the answer: the queue holds many writers' writes.
                    engine.submit(
                        put(&key, "v"),
                        Box::new(move |r| {
                            answered.fetch_add(1, Ordering::SeqCst);
                            if r.is_ok() {
                                acked_tx.send(k).unwrap();
                            }
                        }),
                    );
                }
            });
        }
    });
    engine.close().unwrap();
    assert_eq!(answered.load(Ordering::SeqCst), WRITERS * WRITES_EACH);
    drop(acked_tx);
    let acked: Vec<String> = acked_rx.iter().collect();
    assert_eq!(
        acked.len(),
        WRITERS * WRITES_EACH,
        "every write was acknowledged"
    );
    drop(engine);
    let reopened = open(&dev);
    for key in &acked {
        assert_eq!(
            reopened.get(key.as_bytes()).unwrap().as_deref(),
            Some(&b"v"[..]),
            "{key} was acknowledged"
        );
    }
}

/// One writer at a time never waits for a cohort: its write is committed at once, even after
/// a burst of concurrent writes made the leader expect many writers.
#[test]
fn a_lone_writer_never_waits_for_a_cohort() {
    let dev = Arc::new(FaultyDevice::new(16 << 20, BLOCK));
    let engine = open(&dev);
    for i in 0..300 {
        engine.put(format!("k{i}").as_bytes(), b"v").unwrap();
    }
    assert_eq!(engine.stats().gathers, 0, "a lone writer waited");
    burst_of_8(&engine);
    // The burst was one batch of 8; the next lone writes wait at most once, boundedly, and
    // then not at all.
    let before = engine.stats().gathers;
    for i in 0..50 {
        engine.put(format!("after{i}").as_bytes(), b"v").unwrap();
    }
    let waits = engine.stats().gathers - before;
    assert!(waits <= 1, "{waits} waits after one burst");
}

/// 8 writes committed as one batch: queued by another thread while this one holds the
/// committer (the holder may not submit: the lock order, `Engine::hold_commits`). Leaves a
/// `sync` leader expecting 8 writers.
fn burst_of_8(engine: &Engine) {
    let hold = engine.hold_commits();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..8 {
                engine.submit(put(&format!("burst{i}"), "v"), Box::new(|r| r.unwrap()));
            }
        });
    });
    drop(hold);
}

/// The cohort waits of one lone write right after a burst of 8 concurrent writes (which
/// makes a `sync` leader expect 8 writers).
fn waits_after_a_burst(durability: Durability) -> u64 {
    let dev = Arc::new(FaultyDevice::new(16 << 20, BLOCK));
    let engine = open_with(&dev, durability);
    burst_of_8(&engine);
    let before = engine.stats().gathers;
    engine.put(b"alone", b"v").unwrap();
    engine.stats().gathers - before
}

/// A `sync` leader waits for the cohort it expects; a write-behind one never does (its batch
/// costs no flush, so a smaller one costs less than the wait).
#[test]
fn only_sync_mode_gathers_a_cohort() {
    assert_eq!(waits_after_a_burst(Durability::Sync), 1);
    let write_behind = Durability::WriteBehind {
        max_delay: Duration::from_millis(100),
        max_writes: 64,
    };
    assert_eq!(waits_after_a_burst(write_behind), 0);
}
