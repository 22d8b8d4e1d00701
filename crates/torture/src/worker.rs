//! The workload processes: writers (each over its own keys), the purger, and readers.
//!
//! A writer logs each operation before it issues it (intent) and what it was told (outcome),
//! then goes on. At the first outcome that does not say whether the operation took effect
//! (the daemon died, the device failed) it stops: at most one operation per writer is in
//! doubt. Between operations it reads its own keys back (both GETs) and checks them against
//! what it knows; the verifier does the complete check after each fault.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::log::{Kind, LogDev, OpCode, Record, RegionWriter};
use crate::model::{self, History, Keys};
use crate::rng::Rng;
use crate::store::Store;
use crate::value::{self, key_class, KeyClass, Seg, SEG_HEADER_LEN};

/// The worker finished its time.
pub const EXIT_DONE: u8 = 0;
/// The worker stopped at an outcome in doubt, or could not reach the device.
pub const EXIT_IN_DOUBT: u8 = 3;
/// The worker saw something the contract does not allow (it says what on stderr).
pub const EXIT_WRONG: u8 = 4;
/// The log failed (full, or an I/O error).
pub const EXIT_LOG: u8 = 5;

/// What a worker process is told.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    pub device: PathBuf,
    pub log: PathBuf,
    /// Writer index (its log region); ignored by the purger.
    pub writer: u16,
    pub keys: u32,
    pub seed: u64,
    pub round: u64,
    pub seconds: u64,
    /// Whether a purger runs beside the writers (GETs may then find a key purged).
    pub purges: bool,
    /// Percent of puts that write a large value (90 KiB to the limit).
    pub big_percent: u64,
    /// Milliseconds between PURGEs (the purger), at random up to this.
    pub purge_every_ms: u64,
}

/// Errnos that do not say whether a write took effect: the daemon went away (ECONNABORTED,
/// ENODEV, ENOTCONN, ENXIO) or the store failed (EIO).
fn in_doubt(e: Errno) -> bool {
    matches!(
        e,
        Errno::ECONNABORTED | Errno::ENODEV | Errno::ENOTCONN | Errno::ENXIO | Errno::EIO
    )
}

/// Opens the device, retrying for a while (hpkvd may be starting).
pub fn open_store(path: &Path, wait: Duration) -> Result<Store, Errno> {
    let until = Instant::now() + wait;
    loop {
        match Store::open(path) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The writer's own keys as the log left them: one state, since every earlier round ended
/// with a settle record (the first candidate; all of them agree on the keys).
fn starting_state(log: &LogDev, writer: u16) -> Result<Keys, String> {
    let (records, _) = log.read_region(writer).map_err(|e| e.to_string())?;
    let (purger, _) = log
        .read_region(log.header.purger_region())
        .map_err(|e| e.to_string())?;
    let (orch, _) = log
        .read_region(log.header.orchestrator_region())
        .map_err(|e| e.to_string())?;
    let h = History::build(&[records], &purger, &orch)?;
    let cands = model::replay(&h.writers[0], &h.purges).map_err(|e| e.0)?;
    Ok(cands.into_iter().next().map(|c| c.keys).unwrap_or_default())
}

/// One write operation, chosen.
struct Planned {
    code: OpCode,
    key: u32,
    len: u32,
}

/// A writer over its keys: each operation logged, issued, and learned from.
pub struct Writer<'a> {
    spec: &'a WorkerSpec,
    store: Store,
    region: RegionWriter<'a>,
    epoch: u32,
    rng: Rng,
    model: Keys,
    seq: u64,
}

pub fn run_writer(spec: &WorkerSpec) -> ExitCode {
    let log = match LogDev::open(&spec.log) {
        Ok(l) => l,
        Err(e) => {
            return fail(
                EXIT_LOG,
                &format!("opening the log {}: {e}", spec.log.display()),
            )
        }
    };
    let mut w = match Writer::open(spec, &log) {
        Ok(w) => w,
        Err((EXIT_IN_DOUBT, _)) => return ExitCode::from(EXIT_IN_DOUBT),
        Err((code, why)) => return fail(code, &why),
    };
    let until = Instant::now() + Duration::from_secs(spec.seconds);
    while Instant::now() < until {
        let r = if w.rng.chance(18) {
            w.check_one()
        } else {
            w.write_one()
        };
        if let Err(code) = r {
            return ExitCode::from(code);
        }
    }
    ExitCode::from(EXIT_DONE)
}

fn fail(code: u8, what: &str) -> ExitCode {
    eprintln!("torture worker: {what}");
    ExitCode::from(code)
}

impl<'a> Writer<'a> {
    /// The writer of `spec.writer`'s region, its keys as the log left them.
    pub fn open(spec: &'a WorkerSpec, log: &'a LogDev) -> Result<Writer<'a>, (u8, String)> {
        let model = starting_state(log, spec.writer)
            .map_err(|e| (EXIT_WRONG, format!("writer {}: the log: {e}", spec.writer)))?;
        let region = log
            .region_writer(spec.writer)
            .map_err(|e| (EXIT_LOG, format!("log region: {e}")))?;
        let store = open_store(&spec.device, Duration::from_secs(5))
            .map_err(|e| (EXIT_IN_DOUBT, format!("{}: {e}", spec.device.display())))?;
        let epoch = log.header.epoch;
        Ok(Writer {
            spec,
            store,
            seq: region.last_seq,
            region,
            epoch,
            rng: Rng::derive(
                spec.seed,
                &[0x77, u64::from(spec.writer), u64::from(epoch), spec.round],
            ),
            model,
        })
    }

    /// The keys as this writer knows them.
    pub fn keys(&self) -> &Keys {
        &self.model
    }

    /// Logs, issues and learns from one operation: the device's answer, or the exit code of
    /// a worker that would stop here (an answer in doubt or not allowed, a log failure).
    pub fn op(&mut self, code: OpCode, key: u32, len: u32) -> Result<Result<(), Errno>, u8> {
        self.logged(&Planned { code, key, len })
    }

    fn segment_len(&mut self, max: usize) -> u32 {
        let len = match self.rng.below(100) {
            r if r < self.spec.big_percent => self.rng.len(90_000, max),
            r if r < self.spec.big_percent + 15 => self.rng.len(2_000, 20_000),
            _ => self.rng.len(SEG_HEADER_LEN, 2_000),
        };
        u32::try_from(len.min(max)).expect("at most 102400")
    }

    fn plan(&mut self) -> Planned {
        let key = u32::try_from(self.rng.below(u64::from(self.spec.keys))).expect("keys fit u32");
        let binary = key_class(key) == KeyClass::Binary;
        let cur = self.model.get(&key).map_or(0, |s| value::value_len(s));
        let r = self.rng.below(100);
        // write() cannot name a 512-byte key, nor can the readme DELETE: INSERT and
        // PARTIAL_UPDATE stand in.
        let code = match r {
            0..=21 if !binary => OpCode::WritePut,
            22..=39 if !binary => OpCode::WriteAppend,
            80.. if !binary => OpCode::Delete,
            22..=39 | 60..=79 => OpCode::PartialUpdate,
            _ => OpCode::Insert,
        };
        let code = if code == OpCode::Delete && cur == 0 && self.rng.chance(70) {
            OpCode::Insert // mostly delete keys that exist
        } else {
            code
        };
        let len = match code {
            OpCode::Delete => 0,
            OpCode::WritePut => self.segment_len(hpkv_abi::WRITE_VALUE_MAX),
            c if c.is_put() => self.segment_len(hpkv_abi::VALUE_MAX),
            _ => u32::try_from(self.rng.len(SEG_HEADER_LEN, 3_000)).expect("small"),
        };
        // An append that would pass the limit becomes a put, but now and then it is sent
        // anyway, to see EMSGSIZE.
        if code.is_append() && cur + len as usize > hpkv_abi::VALUE_MAX && !self.rng.chance(10) {
            let code = if binary {
                OpCode::Insert
            } else {
                OpCode::WritePut
            };
            let len = self.segment_len(hpkv_abi::WRITE_VALUE_MAX);
            return Planned { code, key, len };
        }
        Planned { code, key, len }
    }

    fn issue(&self, p: &Planned, seq: u64) -> Result<(), Errno> {
        let key = value::key(self.spec.writer, p.key);
        let seg = || value::segment(&key, self.spec.writer, Seg { seq, len: p.len });
        match p.code {
            OpCode::WritePut | OpCode::WriteAppend => {
                let mut buf = key.clone();
                buf.push(b':');
                if p.code == OpCode::WriteAppend {
                    buf.push(b'+');
                }
                buf.extend_from_slice(&seg());
                self.store.write(&buf)
            }
            OpCode::Insert => self.store.insert(&key, &seg()),
            OpCode::PartialUpdate => self.store.partial_update(&key, &seg()),
            OpCode::Delete => self.store.delete(&key),
            OpCode::Purge | OpCode::None => unreachable!("writers do not purge"),
        }
    }

    fn log(&mut self, rec: &Record) -> Result<(), u8> {
        self.region.append(rec).map_err(|e| {
            eprintln!("torture worker {}: log: {e}", self.spec.writer);
            EXIT_LOG
        })
    }

    fn write_one(&mut self) -> Result<(), u8> {
        let p = self.plan();
        self.logged(&p).map(drop)
    }

    fn logged(&mut self, p: &Planned) -> Result<Result<(), Errno>, u8> {
        self.seq += 1;
        let seq = self.seq;
        let mut intent = Record::new(Kind::Intent, p.code, self.epoch, seq);
        intent.key = p.key;
        intent.len = p.len;
        self.log(&intent)?;
        let result = self.issue(p, seq);
        let mut outcome = Record::new(Kind::Outcome, p.code, self.epoch, seq);
        outcome.errno = result.err().map_or(0, |e| e as i32);
        self.log(&outcome)?;
        self.learn(p, seq, result).map(|()| result)
    }

    /// Updates the writer's own idea of its keys from an outcome; stops at doubt and at an
    /// errno the contract does not allow here.
    fn learn(&mut self, p: &Planned, seq: u64, result: Result<(), Errno>) -> Result<(), u8> {
        let seg = Seg { seq, len: p.len };
        let cur_len = self.model.get(&p.key).map_or(0, |s| value::value_len(s));
        match (p.code, result) {
            (OpCode::Delete, Ok(())) => {
                if self.model.remove(&p.key).is_none() {
                    return Err(self.wrong(p, "a DELETE of a key that is not there succeeded"));
                }
            }
            (c, Ok(())) if c.is_put() => {
                self.model.insert(p.key, vec![seg]);
            }
            (c, Ok(())) if c.is_append() => {
                if cur_len + p.len as usize > hpkv_abi::VALUE_MAX && !self.spec.purges {
                    return Err(self.wrong(p, "an append past 102400 bytes was acknowledged"));
                }
                self.model.entry(p.key).or_default().push(seg);
                if cur_len + p.len as usize > hpkv_abi::VALUE_MAX {
                    self.resync(p.key)?; // a PURGE made room: learn what is there now
                }
            }
            (OpCode::Delete, Err(Errno::ENOENT)) if cur_len == 0 || self.spec.purges => {
                self.model.remove(&p.key);
            }
            (c, Err(Errno::EMSGSIZE))
                if c.is_append() && cur_len + p.len as usize > hpkv_abi::VALUE_MAX => {}
            (_, Err(Errno::ENOSPC)) if p.code != OpCode::Delete => {}
            (_, Err(e)) if in_doubt(e) => return Err(EXIT_IN_DOUBT),
            (_, Err(e)) => return Err(self.wrong(p, &format!("answered {e}"))),
            (_, Ok(())) => unreachable!("every code is a put, an append or a delete"),
        }
        Ok(())
    }

    fn wrong(&self, p: &Planned, what: &str) -> u8 {
        eprintln!(
            "torture worker {}: {} of key {} ({} bytes; {} bytes known): {what}",
            self.spec.writer,
            p.code.name(),
            p.key,
            p.len,
            self.model.get(&p.key).map_or(0, |s| value::value_len(s)),
        );
        EXIT_WRONG
    }

    /// Reads a key every way and checks the values.
    fn check_one(&mut self) -> Result<(), u8> {
        let key_idx = u32::try_from(self.rng.below(u64::from(self.spec.keys))).expect("fits");
        let key = value::key(self.spec.writer, key_idx);
        let safe = self.store.get_safe(&key);
        let readme = if key_class(key_idx) == KeyClass::String {
            Some(self.store.get_readme(&key))
        } else {
            None
        };
        let got = match safe {
            Ok(v) => v,
            Err(e) if in_doubt(e) => return Err(EXIT_IN_DOUBT),
            Err(e) => return Err(self.wrong_get(key_idx, &format!("the safe GET answered {e}"))),
        };
        if let Some(r) = readme {
            match r {
                // A write may land between the two reads only if a PURGE is about.
                Ok(v) if v == got || self.spec.purges => {}
                Ok(_) => return Err(self.wrong_get(key_idx, "the two GETs disagree")),
                Err(e) if in_doubt(e) => return Err(EXIT_IN_DOUBT),
                Err(e) => return Err(self.wrong_get(key_idx, &format!("GET answered {e}"))),
            }
        }
        self.judge_read(key_idx, &key, got.as_deref())?;
        // A client's GET, from the shared view when it can answer: the same judgement.
        match self.store.get_view(&key) {
            Ok((v, _)) => self.judge_read(key_idx, &key, v.as_deref()),
            Err(e) if in_doubt(e) => Err(EXIT_IN_DOUBT),
            Err(e) => Err(self.wrong_get(key_idx, &format!("a client's GET answered {e}"))),
        }
    }

    fn judge_read(&mut self, idx: u32, key: &[u8], got: Option<&[u8]>) -> Result<(), u8> {
        let segs = match got.map(|v| value::parse_value(key, self.spec.writer, v)) {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => return Err(self.wrong_get(idx, &e)),
        };
        let want = self.model.get(&idx);
        if segs.as_ref() == want {
            return Ok(());
        }
        // A PURGE may have taken the key, or the part of it before some append.
        let fits_purge = self.spec.purges
            && match (&segs, want) {
                (None, _) => true,
                (Some(s), Some(w)) => w.ends_with(s),
                (Some(_), None) => false,
            };
        if !fits_purge {
            let show = |s: Option<&Vec<Seg>>| {
                s.map_or("absent".into(), |s| {
                    format!("{:?}", s.iter().map(|x| x.seq).collect::<Vec<_>>())
                })
            };
            let what = format!(
                "read {}, the writer knows {}",
                show(segs.as_ref()),
                show(want)
            );
            return Err(self.wrong_get(idx, &what));
        }
        match segs {
            Some(s) => self.model.insert(idx, s),
            None => self.model.remove(&idx),
        };
        Ok(())
    }

    fn resync(&mut self, idx: u32) -> Result<(), u8> {
        let key = value::key(self.spec.writer, idx);
        match self.store.get_safe(&key) {
            Ok(v) => {
                let segs = v
                    .map(|v| value::parse_value(&key, self.spec.writer, &v))
                    .transpose()
                    .map_err(|e| self.wrong_get(idx, &e))?;
                match segs {
                    Some(s) => self.model.insert(idx, s),
                    None => self.model.remove(&idx),
                };
                Ok(())
            }
            Err(e) if in_doubt(e) => Err(EXIT_IN_DOUBT),
            Err(e) => Err(self.wrong_get(idx, &format!("the safe GET answered {e}"))),
        }
    }

    fn wrong_get(&self, idx: u32, what: &str) -> u8 {
        eprintln!(
            "torture worker {}: GET of key {idx}: {what}",
            self.spec.writer
        );
        EXIT_WRONG
    }
}

/// The purger: a PURGE now and then, each logged like a writer's operation.
pub fn run_purger(spec: &WorkerSpec) -> ExitCode {
    let log = match LogDev::open(&spec.log) {
        Ok(l) => l,
        Err(e) => return fail(EXIT_LOG, &format!("opening the log: {e}")),
    };
    let mut region = match log.region_writer(log.header.purger_region()) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_LOG, &format!("log region: {e}")),
    };
    let Ok(store) = open_store(&spec.device, Duration::from_secs(5)) else {
        return ExitCode::from(EXIT_IN_DOUBT);
    };
    let epoch = log.header.epoch;
    let mut rng = Rng::derive(spec.seed, &[0x70, u64::from(epoch), spec.round]);
    let mut seq = region.last_seq;
    let until = Instant::now() + Duration::from_secs(spec.seconds);
    loop {
        let pause = Duration::from_millis(rng.range(spec.purge_every_ms / 4, spec.purge_every_ms));
        if Instant::now() + pause >= until {
            return ExitCode::from(EXIT_DONE);
        }
        std::thread::sleep(pause);
        seq += 1;
        if region
            .append(&Record::new(Kind::Intent, OpCode::Purge, epoch, seq))
            .is_err()
        {
            return ExitCode::from(EXIT_LOG);
        }
        let result = store.purge();
        let mut outcome = Record::new(Kind::Outcome, OpCode::Purge, epoch, seq);
        outcome.errno = result.err().map_or(0, |e| e as i32);
        if region.append(&outcome).is_err() {
            return ExitCode::from(EXIT_LOG);
        }
        match result {
            Ok(()) => {}
            Err(e) if in_doubt(e) => return ExitCode::from(EXIT_IN_DOUBT),
            Err(e) => return fail(EXIT_WRONG, &format!("PURGE answered {e}")),
        }
    }
}
