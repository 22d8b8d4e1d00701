//! Pipelined group commit (`sync` mode): while the device flushes one batch, the next batch is
//! staged and written; each is answered, and becomes visible, only once a flush that began
//! after its write has finished.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hpkv_engine::faulty::{CrashMode, FaultyDevice};
use hpkv_engine::{BlockDevice, Config, Engine, Error, WriteOp};

const BLOCK: u32 = 4096;
/// How long a test waits for something that must happen (a hang fails, it does not block).
const WAIT: Duration = Duration::from_secs(20);

/// A device whose flushes wait at a gate while it is closed, counting the flushes waiting; and
/// whose writes and flushes take `delay` each (none unless set), as a disk's would.
struct GatedDevice {
    inner: Arc<FaultyDevice>,
    delay: Duration,
    closed: Mutex<bool>,
    opened: Condvar,
    waiting: AtomicU64,
    writes: AtomicU64,
    /// Set when a write arrives while a flush waits at the gate.
    write_during_flush: AtomicBool,
}

impl GatedDevice {
    fn new(inner: Arc<FaultyDevice>) -> GatedDevice {
        GatedDevice {
            inner,
            delay: Duration::ZERO,
            closed: Mutex::new(false),
            opened: Condvar::new(),
            waiting: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            write_during_flush: AtomicBool::new(false),
        }
    }

    fn close_gate(&self) {
        *self.closed.lock().unwrap() = true;
    }

    fn open_gate(&self) {
        *self.closed.lock().unwrap() = false;
        self.opened.notify_all();
    }
}

impl BlockDevice for GatedDevice {
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
    fn block_size(&self) -> u32 {
        self.inner.block_size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::thread::sleep(self.delay);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.write_during_flush.store(true, Ordering::SeqCst);
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        std::thread::sleep(self.delay);
        let mut closed = self.closed.lock().unwrap();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + WAIT;
        while *closed && Instant::now() < deadline {
            closed = self.opened.wait_timeout(closed, WAIT).unwrap().0;
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        drop(closed);
        self.inner.flush()
    }
    fn describe(&self) -> String {
        "gated test device".into()
    }
}

fn put(key: &str, value: &str) -> WriteOp {
    WriteOp::Put {
        key: key.as_bytes().into(),
        value: value.as_bytes().into(),
    }
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Submits `op` from a thread of its own (a leader blocks in the commit); the answer comes
/// on the returned channel.
fn submit(engine: &Arc<Engine>, op: WriteOp) -> mpsc::Receiver<Result<(), Error>> {
    let (tx, rx) = mpsc::channel();
    let e = engine.clone();
    std::thread::spawn(move || {
        e.submit(op, Box::new(move |r| tx.send(r).unwrap()));
    });
    rx
}

/// Two batches in flight: after a first write (which opens the log's segment, written and
/// flushed under the lock), writer A's batch is written and its flush held at the gate, and
/// writer B's batch is written during that flush.
struct InFlight {
    faulty: Arc<FaultyDevice>,
    gated: Arc<GatedDevice>,
    engine: Arc<Engine>,
    a: mpsc::Receiver<Result<(), Error>>,
    b: mpsc::Receiver<Result<(), Error>>,
    /// `Stats::overlapped_writes` before A and B.
    overlapped_before: u64,
}

fn two_batches_in_flight() -> InFlight {
    let faulty = Arc::new(FaultyDevice::new(16 << 20, BLOCK));
    let gated = Arc::new(GatedDevice::new(faulty.clone()));
    let dev: Arc<dyn BlockDevice> = gated.clone();
    let config = Config {
        background_compaction: false,
        ..Config::default()
    };
    let engine = Arc::new(Engine::open(dev, config).unwrap());
    submit(&engine, put("first", "0"))
        .recv_timeout(WAIT)
        .unwrap()
        .unwrap();
    let overlapped_before = engine.stats().overlapped_writes;
    gated.close_gate();
    let a = submit(&engine, put("a", "1"));
    wait_until("A's flush waits at the gate", || {
        gated.waiting.load(Ordering::SeqCst) == 1
    });
    let writes_before_b = gated.writes.load(Ordering::SeqCst);
    let b = submit(&engine, put("b", "2"));
    wait_until("B's batch is written during A's flush", || {
        gated.writes.load(Ordering::SeqCst) > writes_before_b
    });
    InFlight {
        faulty,
        gated,
        engine,
        a,
        b,
        overlapped_before,
    }
}

/// Writer A's batch is written and its flush held at the gate; writer B's batch is then
/// written during that flush (with a committer that flushed under its lock, B's write could
/// not happen before the gate opened). Neither is answered or visible until a flush that
/// began after its write finishes; a power loss meanwhile keeps neither acknowledged.
#[test]
fn the_next_batch_is_written_while_the_device_flushes() {
    let InFlight {
        faulty,
        gated,
        engine,
        a,
        b,
        overlapped_before,
    } = two_batches_in_flight();
    assert!(gated.write_during_flush.load(Ordering::SeqCst));
    // Give a wrong answer time to show.
    std::thread::sleep(Duration::from_millis(50));
    assert!(a.try_recv().is_err(), "A was answered before its flush");
    assert!(b.try_recv().is_err(), "B was answered before any flush");
    assert_eq!(
        engine.get(b"a").unwrap(),
        None,
        "A is visible before its flush"
    );
    assert_eq!(
        engine.get(b"b").unwrap(),
        None,
        "B is visible before its flush"
    );
    // Power lost now: whatever survives, nothing was acknowledged, and the store opens.
    for mode in [CrashMode::LoseAll, CrashMode::KeepAll, CrashMode::Random] {
        let img = faulty.crash_image(mode, 7);
        let crashed: Arc<dyn BlockDevice> = Arc::new(FaultyDevice::from_image(img, BLOCK));
        let reopened = Engine::open(crashed, Config::default()).unwrap();
        reopened.check_invariants();
        reopened.verify_against_disk().unwrap();
    }

    gated.open_gate();
    a.recv_timeout(WAIT).unwrap().unwrap();
    b.recv_timeout(WAIT).unwrap().unwrap();
    assert_eq!(engine.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(engine.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
    assert!(engine.stats().overlapped_writes > overlapped_before);

    // Both acknowledged: both survive a power loss that keeps nothing unflushed.
    let img = faulty.crash_image(CrashMode::LoseAll, 0);
    let crashed: Arc<dyn BlockDevice> = Arc::new(FaultyDevice::from_image(img, BLOCK));
    let reopened = Engine::open(crashed, Config::default()).unwrap();
    assert_eq!(reopened.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(reopened.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
}

/// Concurrent writers through the pipeline: every write answered once, in a store that a
/// power loss after the last answer leaves with every acknowledged write, and a delete (which
/// must see the puts in flight) finds every key.
#[test]
fn concurrent_puts_then_deletes_through_the_pipeline() {
    let faulty = Arc::new(FaultyDevice::new(32 << 20, BLOCK));
    let dev: Arc<dyn BlockDevice> = faulty.clone();
    let config = Config {
        background_compaction: false,
        ..Config::default()
    };
    let engine = Arc::new(Engine::open(dev, config).unwrap());
    let writers = 8;
    let per_writer = 200;
    std::thread::scope(|s| {
        for w in 0..writers {
            let engine = engine.clone();
            s.spawn(move || {
                for i in 0..per_writer {
                    let (tx, rx) = mpsc::channel();
                    let op = put(&format!("w{w}-{i}"), &format!("v{i}"));
                    engine.submit(op, Box::new(move |r| tx.send(r).unwrap()));
                    rx.recv_timeout(WAIT).unwrap().unwrap();
                }
            });
        }
    });
    let img = faulty.crash_image(CrashMode::LoseAll, 0);
    let crashed: Arc<dyn BlockDevice> = Arc::new(FaultyDevice::from_image(img, BLOCK));
    let reopened = Engine::open(crashed, Config::default()).unwrap();
    reopened.check_invariants();
    for w in 0..writers {
        for i in 0..per_writer {
            let key = format!("w{w}-{i}");
            let got = reopened.get(key.as_bytes()).unwrap();
            assert_eq!(got.as_deref(), Some(format!("v{i}").as_bytes()), "{key}");
        }
    }
    drop(reopened);
    // Deletes right behind puts of the same keys, from several writers at once.
    std::thread::scope(|s| {
        for w in 0..writers {
            let engine = engine.clone();
            s.spawn(move || {
                for i in 0..20 {
                    let key = format!("d{w}-{i}");
                    let (tx, rx) = mpsc::channel();
                    engine.submit(put(&key, "x"), Box::new(move |r| tx.send(r).unwrap()));
                    let (dtx, drx) = mpsc::channel();
                    let del = WriteOp::Delete {
                        key: key.as_bytes().into(),
                    };
                    engine.submit(del, Box::new(move |r| dtx.send(r).unwrap()));
                    rx.recv_timeout(WAIT).unwrap().unwrap();
                    drx.recv_timeout(WAIT).unwrap().unwrap();
                    assert_eq!(engine.get(key.as_bytes()).unwrap(), None, "{key}");
                }
            });
        }
    });
    engine.close().unwrap();
}

/// A flush fails while a second batch waits for the next one: both batches fail, even though
/// the device's next flush would succeed (the first batch's writes may be lost, and the second
/// batch lies after them in the log), and the store refuses later writes.
#[test]
fn a_failed_flush_fails_every_batch_in_flight() {
    let InFlight {
        faulty,
        gated,
        engine,
        a,
        b,
        ..
    } = two_batches_in_flight();
    // The next device operation, A's flush, fails; the one after it would not.
    faulty.fail_op(0);
    gated.open_gate();
    let a = a.recv_timeout(WAIT).unwrap();
    let b = b.recv_timeout(WAIT).unwrap();
    assert!(matches!(a, Err(Error::Io(_))), "A: {a:?}");
    assert!(matches!(b, Err(Error::Io(_))), "B: {b:?}");
    assert_eq!(engine.get(b"a").unwrap(), None);
    assert_eq!(engine.get(b"b").unwrap(), None);
    let later = submit(&engine, put("c", "3")).recv_timeout(WAIT).unwrap();
    assert!(later.is_err(), "a write after the failure: {later:?}");
    assert_eq!(
        engine.get(b"first").unwrap().as_deref(),
        Some(&b"0"[..]),
        "what was acknowledged before stays readable"
    );
}

/// The writers commit every write themselves: with the timer's safety net an hour away,
/// every write of bursts of 16 writers that start together is answered. Writes queued while a
/// leader holds the committer (its device write takes 2 ms here) find the lock taken and
/// leave them to it; a leader that let go without looking at the queue again would leave them
/// there until the timer came, since nobody else writes after a burst.
#[test]
fn writers_alone_commit_every_write() {
    let dev: Arc<dyn BlockDevice> = Arc::new(GatedDevice {
        delay: Duration::from_millis(2),
        ..GatedDevice::new(Arc::new(FaultyDevice::new(32 << 20, BLOCK)))
    });
    let config = Config {
        background_compaction: false,
        sync_safety_net: Duration::from_secs(3600),
        ..Config::default()
    };
    let engine = Arc::new(Engine::open(dev, config).unwrap());
    let (bursts, writers) = (20, 16);
    for burst in 0..bursts {
        let start = std::sync::Barrier::new(writers);
        std::thread::scope(|s| {
            for w in 0..writers {
                let (engine, start) = (engine.clone(), &start);
                s.spawn(move || {
                    let (tx, rx) = mpsc::channel();
                    start.wait();
                    engine.submit(
                        put(&format!("b{burst}-{w}"), "v"),
                        Box::new(move |r| tx.send(r).unwrap()),
                    );
                    rx.recv_timeout(WAIT)
                        .expect("answered without the timer")
                        .unwrap();
                });
            }
        });
    }
    assert_eq!(engine.stats().records, bursts * writers as u64);
}
