//! The one verifier: reads the whole store back through the device, every way it can be read,
//! checks the ways agree, and checks the result against the acknowledged-operations log.
//!
//! Read back: RANGE over everything (keys strictly increasing: sorted, no duplicate), the
//! listing `read()` (the same records, byte for byte), and for every key the workloads may
//! have written the safe GET and, for keys of at most 511 bytes, the module's GET (both must
//! agree with RANGE, present or absent). Every value must parse into intact segments of its
//! own key. Then [`model::verify`] decides whether the observed keys are a state the log
//! allows; if they are, a settle record per writer (and a decision for an uncertain PURGE)
//! pins them for the next verification.

use std::path::Path;

use crate::log::{Kind, LogDev, OpCode, Record};
use crate::model::{self, History, Keys};
use crate::rng::Rng;
use crate::store::{parse_listing, Store};
use crate::value::{self, key_class, KeyClass};

/// What one verification covered.
#[derive(Clone, Copy, Debug, Default)]
pub struct Figures {
    /// Operations in the log, and of those acknowledged (all verified).
    pub operations: u64,
    pub acknowledged: u64,
    /// Records in the store, and bytes of their values.
    pub records: u64,
    pub value_bytes: u64,
    /// Of the GETs the verifier made as a client would, those the shared view answered.
    pub view_answers: u64,
}

/// Reads the store back and checks that every way of reading it agrees; the torture keys
/// per writer.
pub fn observe(
    store: &mut Store,
    writers: u16,
    keys: u32,
    rng: &mut Rng,
) -> Result<(Vec<Keys>, Figures), String> {
    let range = store
        .range_all()
        .map_err(|e| format!("RANGE over the store answered {e}"))?;
    for pair in range.windows(2) {
        if pair[0].0 >= pair[1].0 {
            return Err(format!(
                "RANGE returned {:?} after {:?}: not sorted, or a key twice",
                show(&pair[1].0),
                show(&pair[0].0)
            ));
        }
    }
    let text =
        Store::listing(&store.path, rng).map_err(|e| format!("the listing read() answered {e}"))?;
    let listing = parse_listing(&text)?;
    if listing != range {
        let at = listing
            .iter()
            .zip(&range)
            .position(|(a, b)| a != b)
            .unwrap_or(listing.len().min(range.len()));
        return Err(format!(
            "the listing read() ({} records) differs from RANGE ({} records) at record {at}",
            listing.len(),
            range.len()
        ));
    }
    let mut observed = vec![Keys::new(); usize::from(writers)];
    let mut figures = Figures::default();
    for (k, v) in &range {
        let (w, idx) = value::parse_key(k)
            .filter(|&(w, idx)| w < writers && idx < keys)
            .ok_or_else(|| format!("the store holds a key no workload writes: {:?}", show(k)))?;
        let segs = value::parse_value(k, w, v).map_err(|e| format!("key {:?}: {e}", show(k)))?;
        observed[usize::from(w)].insert(idx, segs);
        figures.records += 1;
        figures.value_bytes += v.len() as u64;
    }
    let by_key: std::collections::HashMap<&[u8], &[u8]> = range
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    for w in 0..writers {
        for idx in 0..keys {
            figures.view_answers += u64::from(check_gets(
                store,
                w,
                idx,
                by_key.get(value::key(w, idx).as_slice()).copied(),
            )?);
        }
    }
    Ok((observed, figures))
}

/// Reads key `idx` of writer `w` every way: the safe GET and the module's GET through the
/// device, and a client's GET (from the shared view when it can answer). Whether the view
/// answered.
fn check_gets(store: &mut Store, w: u16, idx: u32, listed: Option<&[u8]>) -> Result<bool, String> {
    let k = value::key(w, idx);
    let safe = store
        .get_safe(&k)
        .map_err(|e| format!("the safe GET of {:?} answered {e}", show(&k)))?;
    if safe.as_deref() != listed {
        return Err(format!(
            "the safe GET of {:?} gives {}, RANGE {}",
            show(&k),
            len_of(safe.as_deref()),
            len_of(listed)
        ));
    }
    let (viewed, by_view) = store.get_view(&k).map_err(|e| {
        format!(
            "a client's GET (shared view) of {:?} answered {e}",
            show(&k)
        )
    })?;
    if viewed.as_deref() != listed {
        return Err(format!(
            "a client's GET of {:?} ({}) gives {}, RANGE {}",
            show(&k),
            if by_view {
                "answered by the shared view"
            } else {
                "through the device"
            },
            len_of(viewed.as_deref()),
            len_of(listed)
        ));
    }
    if key_class(idx) == KeyClass::String {
        let readme = store
            .get_readme(&k)
            .map_err(|e| format!("the GET of {:?} answered {e}", show(&k)))?;
        if readme.as_deref() != listed {
            return Err(format!(
                "the GET of {:?} gives {}, RANGE {}",
                show(&k),
                len_of(readme.as_deref()),
                len_of(listed)
            ));
        }
    }
    Ok(by_view)
}

fn len_of(v: Option<&[u8]>) -> String {
    v.map_or("nothing".into(), |v| format!("{} bytes", v.len()))
}

pub fn show(k: &[u8]) -> String {
    let s = String::from_utf8_lossy(&k[..k.len().min(24)]).into_owned();
    if k.len() > 24 {
        format!("{s}...({} bytes)", k.len())
    } else {
        s
    }
}

/// The whole log as the model reads it.
pub fn history(log: &LogDev) -> Result<History, String> {
    let h = log.header;
    let read = |r: u16| {
        log.read_region(r)
            .map(|(recs, _)| recs)
            .map_err(|e| format!("reading the log: {e}"))
    };
    let writers = (0..h.writers).map(read).collect::<Result<Vec<_>, _>>()?;
    History::build(
        &writers,
        &read(h.purger_region())?,
        &read(h.orchestrator_region())?,
    )
}

/// Verifies the store behind `device` against the log at `log_path` without settling: for a
/// store whose answers in doubt a restart may still resolve either way (a device error).
pub fn verify_only(
    log_path: &Path,
    device: &Path,
    keys: u32,
    seed: u64,
) -> Result<Figures, String> {
    let (_, _, figures) = check(log_path, device, keys, seed, 0x7f)?;
    Ok(figures)
}

/// Reads the store back (with reads chosen by `seed` and `salt`) and judges it against the
/// log: the log, the verdict and the figures.
fn check(
    log_path: &Path,
    device: &Path,
    keys: u32,
    seed: u64,
    salt: u64,
) -> Result<(LogDev, model::Verdict, Figures), String> {
    let log = LogDev::open(log_path).map_err(|e| format!("opening the log: {e}"))?;
    let h = history(&log)?;
    let mut store = crate::worker::open_store(device, std::time::Duration::from_secs(10))
        .map_err(|e| format!("opening {}: {e}", device.display()))?;
    let mut rng = Rng::derive(seed, &[salt, u64::from(log.header.epoch), h.operations]);
    let (observed, mut figures) = observe(&mut store, log.header.writers, keys, &mut rng)?;
    let verdict = model::verify(&h, &observed)?;
    figures.operations = h.operations;
    figures.acknowledged = h.acknowledged;
    Ok((log, verdict, figures))
}

/// Verifies the store behind `device` against the log at `log_path` and, if it passes,
/// settles the round in the log.
pub fn verify_and_settle(
    log_path: &Path,
    device: &Path,
    keys: u32,
    seed: u64,
) -> Result<Figures, String> {
    let (log, verdict, figures) = check(log_path, device, keys, seed, 0x7e)?;
    let epoch = log.header.epoch;
    for (w, d) in (0..log.header.writers).zip(&verdict.digests) {
        let mut rec = Record::new(Kind::Settle, OpCode::None, epoch, 0);
        rec.digest = *d;
        log.region_writer(w)
            .and_then(|mut r| r.append(&rec))
            .map_err(|e| format!("settling writer {w} in the log: {e}"))?;
    }
    if let Some((seq, applied)) = verdict.decision {
        let mut rec = Record::new(Kind::Decision, OpCode::None, epoch, seq);
        rec.flag = u8::from(applied);
        log.region_writer(log.header.orchestrator_region())
            .and_then(|mut r| r.append(&rec))
            .map_err(|e| format!("recording the PURGE decision: {e}"))?;
    }
    Ok(figures)
}
