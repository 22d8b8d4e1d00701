//! The three engines behind one interface: hpkv, redb and fjall, each in a "sync" mode
//! (every acknowledged write is on stable media) and a "write-behind" mode (acknowledged
//! once handed on, flushed every 1024 writes).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hpkv_engine::{Config, Durability, Engine, Stats, WriteOp};

use crate::stats::Rng;
use crate::system::{check_interrupted, create_sparse, Res};

/// Writes between two durable points in write-behind mode (the module's bound; its 30 s
/// bound never fires within a timed phase of this benchmark).
pub const WRITE_BEHIND_EVERY: u64 = 1024;
/// Records per transaction / batch when prefilling redb and fjall.
const PREFILL_CHUNK: usize = 50_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    Hpkv,
    Redb,
    Fjall,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Hpkv => "hpkv",
            EngineKind::Redb => "redb",
            EngineKind::Fjall => "fjall",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Sync,
    WriteBehind,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::WriteBehind => "write-behind",
        }
    }

    /// What each engine does in this mode, for the table headers.
    pub fn describe(self, kind: EngineKind) -> &'static str {
        match (self, kind) {
            (Mode::Sync, EngineKind::Hpkv) => {
                "Durability::Sync (write + device flush per put, group commit)"
            }
            (Mode::Sync, EngineKind::Redb) => {
                "one write transaction per put, Durability::Immediate"
            }
            (Mode::Sync, EngineKind::Fjall) => {
                "insert + Database::persist(PersistMode::SyncData) per put"
            }
            (Mode::WriteBehind, EngineKind::Hpkv) => {
                "Durability::MODULE_WRITE_BEHIND (30 s / 1024 writes)"
            }
            (Mode::WriteBehind, EngineKind::Redb) => {
                "one write transaction per put, Durability::None, Immediate every 1024th"
            }
            (Mode::WriteBehind, EngineKind::Fjall) => {
                "insert (journal flushed to the OS), persist(SyncData) every 1024th"
            }
        }
    }
}

/// Where an engine keeps its data for one run.
#[derive(Clone, Debug)]
pub enum Place {
    /// hpkv on a sparse image file created for the run (and removed after it).
    HpkvImage { path: PathBuf, size: u64 },
    /// hpkv on a block device, formatted for the run.
    HpkvDevice { path: PathBuf },
    /// redb or fjall in a directory created for the run (and removed after it).
    Dir(PathBuf),
}

impl Place {
    fn hpkv_path(&self) -> &Path {
        match self {
            Place::HpkvImage { path, .. } | Place::HpkvDevice { path } => path,
            Place::Dir(d) => d,
        }
    }

    pub fn prepare(&self) -> Res<()> {
        match self {
            Place::HpkvImage { path, size } => Ok(create_sparse(path, *size)?),
            Place::HpkvDevice { .. } => Ok(()),
            Place::Dir(d) => {
                if d.exists() {
                    std::fs::remove_dir_all(d)?;
                }
                Ok(std::fs::create_dir_all(d)?)
            }
        }
    }

    pub fn remove(&self) {
        let r = match self {
            Place::HpkvImage { path, .. } => std::fs::remove_file(path),
            Place::HpkvDevice { .. } => Ok(()),
            Place::Dir(d) => std::fs::remove_dir_all(d),
        };
        if let Err(e) = r {
            eprintln!("warning: removing a store: {e}");
        }
    }

    /// What the data occupies, for images and directories.
    pub fn disk_path(&self) -> Option<&Path> {
        match self {
            Place::HpkvImage { path, .. } => Some(path),
            Place::HpkvDevice { .. } => None,
            Place::Dir(d) => Some(d),
        }
    }
}

/// Keys and values of the benchmark: "key_%08d" and `value_size` bytes, the first 8 of
/// which are the record number, the rest pseudo-random (so compression gains nothing).
#[derive(Clone, Copy, Debug)]
pub struct Data {
    pub value_size: usize,
    pub seed: u64,
}

impl Data {
    #[allow(clippy::unused_self)] // keys do not depend on the data set, values do: one interface
    pub fn key(&self, i: u64, buf: &mut Vec<u8>) {
        buf.clear();
        write!(buf, "key_{i:08}").expect("writing to a Vec");
    }

    pub fn value(&self, i: u64, buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(&i.to_le_bytes());
        let mut rng = Rng::new(self.seed ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D));
        while buf.len() < self.value_size {
            buf.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        buf.truncate(self.value_size.max(1));
    }
}

/// One engine opened in one mode.
pub trait Store: Send + Sync {
    fn put(&self, key: &[u8], value: &[u8]) -> Res<()>;
    /// The length of the value of `key`, if it has one.
    fn get(&self, key: &[u8]) -> Res<Option<usize>>;
    fn hpkv_stats(&self) -> Option<Stats> {
        None
    }
    fn close(self: Box<Self>) -> Res<()>;
}

/// Options that apply to one engine only.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    pub hpkv_cache_bytes: u64,
}

/// Loads the records `ids` as fast as the engine allows (not timed against the others):
/// hpkv in write-behind mode with many writes in flight, redb and fjall in large
/// transactions / batches. Everything is durable and the store closed afterwards.
pub fn prefill(
    kind: EngineKind,
    place: &Place,
    ids: &[u32],
    data: Data,
    opts: EngineOptions,
) -> Res<()> {
    let (mut k, mut v) = (Vec::new(), Vec::new());
    match kind {
        EngineKind::Hpkv => {
            let config = Config {
                durability: Durability::MODULE_WRITE_BEHIND,
                cache_bytes: opts.hpkv_cache_bytes,
                force_initialize: true,
                ..Config::default()
            };
            let engine = Engine::open_path(place.hpkv_path(), config)?;
            let failed = Arc::new(AtomicU64::new(0));
            for (j, &i) in ids.iter().enumerate() {
                if j.is_multiple_of(4096) {
                    check_interrupted()?;
                }
                data.key(u64::from(i), &mut k);
                data.value(u64::from(i), &mut v);
                let failed = failed.clone();
                // submit() blocks while the committer's queue is full: a bounded pipeline.
                engine.submit(
                    WriteOp::Put {
                        key: k.as_slice().into(),
                        value: v.as_slice().into(),
                    },
                    Box::new(move |r| {
                        if r.is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }),
                );
            }
            engine.sync()?;
            let failed = failed.load(Ordering::Relaxed);
            if failed > 0 {
                return Err(format!("hpkv prefill: {failed} writes failed").into());
            }
            engine.close()?;
        }
        EngineKind::Redb => {
            let db = redb::Database::create(place_dir(place)?.join("redb.db"))?;
            // Create the table even when there is nothing to load.
            let mut chunks: Vec<&[u32]> = ids.chunks(PREFILL_CHUNK).collect();
            if chunks.is_empty() {
                chunks.push(&[]);
            }
            for chunk in chunks {
                check_interrupted()?;
                let txn = db.begin_write()?;
                {
                    let mut table = txn.open_table(REDB_TABLE)?;
                    for &i in chunk {
                        data.key(u64::from(i), &mut k);
                        data.value(u64::from(i), &mut v);
                        table.insert(k.as_slice(), v.as_slice())?;
                    }
                }
                txn.commit()?;
            }
        }
        EngineKind::Fjall => {
            let (db, ks) = fjall_open(place)?;
            for chunk in ids.chunks(PREFILL_CHUNK) {
                check_interrupted()?;
                let mut batch = db.batch();
                for &i in chunk {
                    data.key(u64::from(i), &mut k);
                    data.value(u64::from(i), &mut v);
                    batch.insert(&ks, k.as_slice(), v.as_slice());
                }
                batch.commit()?;
            }
            db.persist(fjall::PersistMode::SyncAll)?;
        }
    }
    Ok(())
}

/// Opens the store `prefill` made, in the mode under test.
pub fn open(
    kind: EngineKind,
    place: &Place,
    mode: Mode,
    opts: EngineOptions,
) -> Res<Box<dyn Store>> {
    Ok(match kind {
        EngineKind::Hpkv => {
            let durability = match mode {
                Mode::Sync => Durability::Sync,
                Mode::WriteBehind => Durability::MODULE_WRITE_BEHIND,
            };
            let config = Config {
                durability,
                cache_bytes: opts.hpkv_cache_bytes,
                ..Config::default()
            };
            Box::new(HpkvStore(Engine::open_path(place.hpkv_path(), config)?))
        }
        EngineKind::Redb => Box::new(RedbStore {
            db: redb::Database::create(place_dir(place)?.join("redb.db"))?,
            mode,
            writes: AtomicU64::new(0),
        }),
        EngineKind::Fjall => {
            let (db, ks) = fjall_open(place)?;
            Box::new(FjallStore {
                db,
                ks,
                mode,
                writes: AtomicU64::new(0),
            })
        }
    })
}

fn place_dir(place: &Place) -> Res<&Path> {
    match place {
        Place::Dir(d) => Ok(d),
        _ => Err("redb and fjall need a directory".into()),
    }
}

/// Whether this write (the `n`th, from 1) ends with a durable point.
fn durable_now(mode: Mode, writes: &AtomicU64) -> bool {
    match mode {
        Mode::Sync => true,
        Mode::WriteBehind => {
            (writes.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(WRITE_BEHIND_EVERY)
        }
    }
}

struct HpkvStore(Engine);

impl Store for HpkvStore {
    fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
        Ok(self.0.put(key, value)?)
    }

    fn get(&self, key: &[u8]) -> Res<Option<usize>> {
        Ok(self.0.get(key)?.map(|v| v.len()))
    }

    fn hpkv_stats(&self) -> Option<Stats> {
        Some(self.0.stats())
    }

    fn close(self: Box<Self>) -> Res<()> {
        Ok(self.0.close()?)
    }
}

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("bench");

struct RedbStore {
    db: redb::Database,
    mode: Mode,
    writes: AtomicU64,
}

impl Store for RedbStore {
    fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
        let durability = if durable_now(self.mode, &self.writes) {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        {
            let mut table = txn.open_table(REDB_TABLE)?;
            table.insert(key, value)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Res<Option<usize>> {
        use redb::ReadableDatabase as _;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REDB_TABLE)?;
        let len = table.get(key)?.map(|g| g.value().len());
        Ok(len)
    }

    fn close(self: Box<Self>) -> Res<()> {
        if self.mode == Mode::WriteBehind {
            // Make the tail durable, as hpkv's close does.
            let mut txn = self.db.begin_write()?;
            txn.set_durability(redb::Durability::Immediate)?;
            txn.commit()?;
        }
        drop(self);
        Ok(())
    }
}

fn fjall_open(place: &Place) -> Res<(fjall::Database, fjall::Keyspace)> {
    let db = fjall::Database::builder(place_dir(place)?.join("fjall")).open()?;
    let ks = db.keyspace("bench", fjall::KeyspaceCreateOptions::default)?;
    Ok((db, ks))
}

struct FjallStore {
    db: fjall::Database,
    ks: fjall::Keyspace,
    mode: Mode,
    writes: AtomicU64,
}

impl Store for FjallStore {
    fn put(&self, key: &[u8], value: &[u8]) -> Res<()> {
        // Without manual_journal_persist, insert flushes the journal to the OS.
        self.ks.insert(key, value)?;
        if durable_now(self.mode, &self.writes) {
            self.db.persist(fjall::PersistMode::SyncData)?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Res<Option<usize>> {
        Ok(self.ks.get(key)?.map(|v| v.len()))
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        drop(self);
        Ok(())
    }
}
