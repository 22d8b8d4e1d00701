//! The verifier's model: from the acknowledged-operations log, the states the store may be in,
//! and whether what it holds is one of them.
//!
//! Each writer owns its keys, so its operations are totally ordered; only PURGE (from the
//! purger) crosses writers. For writer X the model replays X's operations in order, starting
//! from one candidate state, and branches only where the log leaves a choice:
//!
//! - an operation without an outcome, or with an outcome that does not say whether it took
//!   effect (EIO, ECONNABORTED: the daemon died, ...): applied or not. A writer stops at
//!   its first such operation, so there is at most one per writer and round: "old or new for
//!   the one operation in flight";
//! - a PURGE concurrent with some of X's operations: it took effect between two of them, at
//!   any point its time window allows. Windows come from the log's clock: an operation that
//!   was acknowledged before the PURGE was issued precedes it, one issued after the PURGE was
//!   acknowledged follows it;
//! - a PURGE without an outcome: applied or not, the same choice for every writer (PURGE is
//!   atomic).
//!
//! Definite outcomes prune candidates: DELETE answered ENOENT needs the key absent, an append
//! answered EMSGSIZE needs the sum over the limit, an acknowledged DELETE needs the key present.
//! After each verification the orchestrator writes a *settle* record per writer (a digest of
//! the state it observed) and a *decision* for an uncertain PURGE, so the next verification
//! starts from exactly what was observed: a state seen once may not change later.

use std::collections::{BTreeMap, HashMap};

use crate::log::{Kind, OpCode, Record};
use crate::rng::mix;
use crate::value::Seg;

/// A point of the log's clock: (boot, `CLOCK_MONOTONIC` ns).
pub type Time = (u32, u64);
/// Later than any time.
pub const NEVER: Time = (u32::MAX, u64::MAX);
/// Candidate states per writer at most: more means the log is not what the workloads write.
pub const CANDIDATES_MAX: usize = 4096;

/// The keys of one writer: index -> segments (absent: no such key).
pub type Keys = BTreeMap<u32, Vec<Seg>>;

/// One operation of a writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub seq: u64,
    pub code: OpCode,
    pub key: u32,
    pub len: u32,
    pub start: Time,
    /// errno (0: acknowledged) and when the call returned; `None`: never returned.
    pub outcome: Option<(i32, Time)>,
}

impl Op {
    fn end(&self) -> Time {
        self.outcome.map_or(NEVER, |(_, t)| t)
    }

    pub fn describe(&self) -> String {
        let outcome = match self.outcome {
            None => "no answer (in flight)".to_string(),
            Some((0, t)) => format!("acknowledged at {}", show_time(t)),
            Some((e, t)) => format!(
                "answered {} at {}",
                nix::errno::Errno::from_raw(e),
                show_time(t)
            ),
        };
        format!(
            "op {} {} of key {} ({} bytes), issued at {}, {outcome}",
            self.seq,
            self.code.name(),
            self.key,
            self.len,
            show_time(self.start)
        )
    }
}

pub fn show_time(t: Time) -> String {
    if t == NEVER {
        return "never".into();
    }
    format!(
        "boot {} +{}.{:03} s",
        t.0,
        t.1 / 1_000_000_000,
        t.1 / 1_000_000 % 1000
    )
}

/// What happened to a writer, in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Op(Op),
    /// A verification observed the writer's keys with this digest.
    Settle {
        at: Time,
        digest: u64,
    },
}

impl Event {
    fn start(&self) -> Time {
        match self {
            Event::Op(op) => op.start,
            Event::Settle { at, .. } => *at,
        }
    }

    fn end(&self) -> Time {
        match self {
            Event::Op(op) => op.end(),
            Event::Settle { at, .. } => *at,
        }
    }
}

/// One PURGE as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purge {
    pub seq: u64,
    pub start: Time,
    /// When it was acknowledged; for an uncertain PURGE decided applied, the verification
    /// that decided it; `NEVER` when undecided.
    pub end: Time,
    /// Uncertain and undecided: it may not have happened at all.
    pub optional: bool,
}

/// The whole log, as the model needs it.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub writers: Vec<Vec<Event>>,
    pub purges: Vec<Purge>,
    /// Acknowledged operations (writers' and PURGEs).
    pub acknowledged: u64,
    pub operations: u64,
}

fn time(r: &Record) -> Time {
    (r.epoch, r.ts_ns)
}

/// Outcomes that say for sure that the operation changed nothing.
fn definite_failure(code: OpCode, errno: i32) -> bool {
    match errno {
        libc::ENOENT => code == OpCode::Delete,
        libc::EMSGSIZE => code.is_append(),
        libc::ENOSPC => code != OpCode::Delete && code != OpCode::Purge,
        _ => false,
    }
}

/// A writer's operations from its region: intents paired with their outcomes.
pub fn writer_events(records: &[Record]) -> Result<Vec<Event>, String> {
    let mut events: Vec<Event> = Vec::new();
    for r in records {
        match r.kind {
            Kind::Intent => events.push(Event::Op(Op {
                seq: r.seq,
                code: r.op,
                key: r.key,
                len: r.len,
                start: time(r),
                outcome: None,
            })),
            Kind::Outcome => match events.last_mut() {
                Some(Event::Op(op)) if op.seq == r.seq && op.outcome.is_none() => {
                    op.outcome = Some((r.errno, time(r)));
                }
                _ => return Err(format!("outcome of op {} without its intent", r.seq)),
            },
            Kind::Settle => events.push(Event::Settle {
                at: time(r),
                digest: r.digest,
            }),
            Kind::Decision => return Err("a decision record in a writer's region".into()),
        }
    }
    Ok(events)
}

impl History {
    /// Builds the history from the regions: writers', the purger's, the orchestrator's.
    pub fn build(
        writer_regions: &[Vec<Record>],
        purger: &[Record],
        orchestrator: &[Record],
    ) -> Result<History, String> {
        let mut h = History::default();
        for (w, recs) in writer_regions.iter().enumerate() {
            let events = writer_events(recs).map_err(|e| format!("writer {w}: {e}"))?;
            for ev in &events {
                if let Event::Op(op) = ev {
                    h.operations += 1;
                    h.acknowledged += u64::from(matches!(op.outcome, Some((0, _))));
                }
            }
            h.writers.push(events);
        }
        let decisions: HashMap<u64, (bool, Time)> = orchestrator
            .iter()
            .filter(|r| r.kind == Kind::Decision)
            .map(|r| (r.seq, (r.flag == 1, time(r))))
            .collect();
        for ev in writer_events(purger).map_err(|e| format!("purger: {e}"))? {
            let Event::Op(op) = ev else { continue };
            h.operations += 1;
            match (op.outcome, decisions.get(&op.seq)) {
                (Some((0, end)), _) => {
                    h.acknowledged += 1;
                    h.purges.push(Purge {
                        seq: op.seq,
                        start: op.start,
                        end,
                        optional: false,
                    });
                }
                (_, Some(&(true, at))) => {
                    h.purges.push(Purge {
                        seq: op.seq,
                        start: op.start,
                        end: at,
                        optional: false,
                    });
                }
                (_, Some(&(false, _))) => {}
                (_, None) => h.purges.push(Purge {
                    seq: op.seq,
                    start: op.start,
                    end: NEVER,
                    optional: true,
                }),
            }
        }
        if h.purges.iter().filter(|p| p.optional).count() > 1 {
            return Err("more than one undecided PURGE: a round was not verified".into());
        }
        Ok(h)
    }
}

/// The digest of a writer's keys (what a settle record holds).
pub fn digest(keys: &Keys) -> u64 {
    let mut h = mix(&[keys.len() as u64]);
    for (&k, segs) in keys {
        h = mix(&[h, u64::from(k), segs.len() as u64]);
        for s in segs {
            h = mix(&[h, s.seq, u64::from(s.len)]);
        }
    }
    h
}

/// What the undecided PURGE did in a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpenPurge {
    /// There is none, or it is still pending in this candidate.
    Pending,
    Applied,
    Dropped,
}

/// One possible state of a writer's keys.
#[derive(Clone, Debug)]
pub struct Cand {
    pub keys: Keys,
    /// Purges before this index are placed (or dropped).
    next_purge: usize,
    pub open: OpenPurge,
    /// The operations left out (in flight, not applied) on the way: for reports.
    pub skipped: Vec<u64>,
}

impl Cand {
    fn id(&self) -> (u64, usize, OpenPurge) {
        (digest(&self.keys), self.next_purge, self.open)
    }
}

fn dedup(cands: Vec<Cand>) -> Vec<Cand> {
    let mut seen = std::collections::HashSet::new();
    cands.into_iter().filter(|c| seen.insert(c.id())).collect()
}

/// Applies an operation's effect; `None` if the outcome contradicts this state.
fn apply(c: &Cand, op: &Op, errno: i32) -> Option<Cand> {
    let cur = c.keys.get(&op.key);
    let mut next = c.clone();
    let seg = Seg {
        seq: op.seq,
        len: op.len,
    };
    match (op.code, errno) {
        (OpCode::Delete, 0) => {
            next.keys.remove(&op.key)?;
        }
        (OpCode::Delete, libc::ENOENT) => {
            if cur.is_some() {
                return None;
            }
        }
        (code, 0) if code.is_put() => {
            next.keys.insert(op.key, vec![seg]);
        }
        (code, 0) if code.is_append() => {
            let segs = next.keys.entry(op.key).or_default();
            if crate::value::value_len(segs) + op.len as usize > hpkv_abi::VALUE_MAX {
                return None;
            }
            segs.push(seg);
        }
        (code, libc::EMSGSIZE) if code.is_append() => {
            let len = cur.map_or(0, |s| crate::value::value_len(s));
            if len + op.len as usize <= hpkv_abi::VALUE_MAX {
                return None;
            }
        }
        (_, libc::ENOSPC) => {}
        _ => return None,
    }
    Some(next)
}

/// The candidates after an operation.
fn step(cands: Vec<Cand>, op: &Op) -> Vec<Cand> {
    let mut out = Vec::with_capacity(cands.len());
    for c in cands {
        match op.outcome {
            Some((e, _)) if e == 0 || definite_failure(op.code, e) => {
                if let Some(n) = apply(&c, op, e) {
                    out.push(n);
                }
            }
            // No answer, or an answer that does not tell: applied, or not.
            _ => {
                // Applied as an acknowledged operation would be (a delete of a missing
                // key changes nothing either way).
                let applied =
                    apply(&c, op, 0).or_else(|| (op.code == OpCode::Delete).then(|| c.clone()));
                if let Some(n) = applied {
                    out.push(n);
                }
                let mut not = c;
                not.skipped.push(op.seq);
                out.push(not);
            }
        }
    }
    out
}

/// Places the pending purges that may or must take effect at position `p` of `events`
/// (before event `p`; `p == events.len()` is the end, where the store was observed).
fn place_purges(cands: Vec<Cand>, purges: &[Purge], events: &[Event], p: usize) -> Vec<Cand> {
    let at_end = p == events.len();
    let mut out = Vec::new();
    let mut stack = cands;
    while let Some(c) = stack.pop() {
        let Some(purge) = purges.get(c.next_purge) else {
            out.push(c);
            continue;
        };
        let prev_started_before_end = p == 0 || events[p - 1].start() <= purge.end;
        let next_ended_after_start = at_end || purge.start <= events[p].end();
        let can = prev_started_before_end && next_ended_after_start;
        let must = if at_end {
            !purge.optional
        } else {
            events[p].start() > purge.end
        };
        if can {
            let mut placed = c.clone();
            placed.keys.clear();
            placed.next_purge += 1;
            if purge.optional {
                placed.open = OpenPurge::Applied;
            }
            stack.push(placed);
        }
        if at_end && purge.optional {
            let mut dropped = c;
            dropped.next_purge += 1;
            dropped.open = OpenPurge::Dropped;
            stack.push(dropped);
        } else if !must {
            out.push(c);
        }
    }
    dedup(out)
}

/// Why a writer's history cannot be replayed.
#[derive(Debug)]
pub struct ReplayError(pub String);

/// Every state writer `events` may have left, with the PURGEs.
pub fn replay(events: &[Event], purges: &[Purge]) -> Result<Vec<Cand>, ReplayError> {
    let mut cands = vec![Cand {
        keys: Keys::new(),
        next_purge: 0,
        open: OpenPurge::Pending,
        skipped: Vec::new(),
    }];
    for (p, ev) in events.iter().enumerate() {
        cands = place_purges(cands, purges, events, p);
        match ev {
            Event::Op(op) => {
                let before = cands.len();
                cands = dedup(step(cands, op));
                if cands.is_empty() {
                    return Err(ReplayError(format!(
                        "no state of the {before} possible explains {}",
                        op.describe()
                    )));
                }
            }
            Event::Settle { at, digest: d } => {
                cands.retain(|c| digest(&c.keys) == *d);
                if cands.is_empty() {
                    return Err(ReplayError(format!(
                        "the state observed at {} is none of the possible ones",
                        show_time(*at)
                    )));
                }
                for c in &mut cands {
                    c.skipped.clear();
                }
            }
        }
        if cands.len() > CANDIDATES_MAX {
            return Err(ReplayError(format!(
                "more than {CANDIDATES_MAX} possible states after event {p}"
            )));
        }
    }
    Ok(place_purges(cands, purges, events, events.len()))
}

/// The verdict on one observation of the store.
#[derive(Debug)]
pub struct Verdict {
    /// The undecided PURGE, and whether the store shows it applied.
    pub decision: Option<(u64, bool)>,
    /// Per writer: the digest of the observed state (for its settle record).
    pub digests: Vec<u64>,
}

/// Checks `observed` (per writer) against the history. The error lists what differs from
/// the closest possible state, key by key.
pub fn verify(h: &History, observed: &[Keys]) -> Result<Verdict, String> {
    assert_eq!(
        observed.len(),
        h.writers.len(),
        "one observation per writer"
    );
    let mut per_writer = Vec::new();
    for (w, events) in h.writers.iter().enumerate() {
        let cands = replay(events, &h.purges).map_err(|e| format!("writer {w}: {}", e.0))?;
        per_writer.push(cands);
    }
    let open = h.purges.iter().find(|p| p.optional).map(|p| p.seq);
    let choices: &[OpenPurge] = if open.is_some() {
        &[OpenPurge::Applied, OpenPurge::Dropped]
    } else {
        &[OpenPurge::Pending]
    };
    for &choice in choices {
        let fits = per_writer
            .iter()
            .zip(observed)
            .all(|(cands, obs)| cands.iter().any(|c| (c.open == choice) && c.keys == *obs));
        if fits {
            return Ok(Verdict {
                decision: open.map(|seq| (seq, choice == OpenPurge::Applied)),
                digests: observed.iter().map(digest).collect(),
            });
        }
    }
    Err(explain(h, &per_writer, observed))
}

/// What differs, for the writer(s) whose observed keys match no candidate.
fn explain(h: &History, per_writer: &[Vec<Cand>], observed: &[Keys]) -> String {
    let mut lines = Vec::new();
    for (w, (cands, obs)) in per_writer.iter().zip(observed).enumerate() {
        if cands.iter().any(|c| c.keys == *obs) {
            continue;
        }
        let closest = cands
            .iter()
            .min_by_key(|c| diff_keys(&c.keys, obs).len())
            .expect("replay gives at least one candidate");
        let diffs = diff_keys(&closest.keys, obs);
        lines.push(format!(
            "writer {w}: {} of its keys differ from the closest of {} possible states \
             (operations left out as in flight: {:?}):",
            diffs.len(),
            cands.len(),
            closest.skipped
        ));
        let ops: HashMap<u64, &Op> = h.writers[w]
            .iter()
            .filter_map(|e| match e {
                Event::Op(op) => Some((op.seq, op)),
                Event::Settle { .. } => None,
            })
            .collect();
        for (k, want, got) in diffs.into_iter().take(8) {
            let name = |segs: Option<&Vec<Seg>>| match segs {
                None => "absent".to_string(),
                Some(s) => format!("segments {:?}", s.iter().map(|s| s.seq).collect::<Vec<_>>()),
            };
            let last = want
                .and_then(|s| s.last())
                .and_then(|s| ops.get(&s.seq))
                .map_or(String::new(), |op| {
                    format!("; expected from {}", op.describe())
                });
            lines.push(format!(
                "  key {k}: store has {}, expected {}{last}",
                name(got),
                name(want)
            ));
        }
    }
    if lines.is_empty() {
        lines.push(
            "every writer matches some state, but no one choice for the uncertain PURGE \
             fits them all: the PURGE was not atomic"
                .into(),
        );
    }
    lines.join("\n")
}

type KeyDiff<'a> = (u32, Option<&'a Vec<Seg>>, Option<&'a Vec<Seg>>);

fn diff_keys<'a>(want: &'a Keys, got: &'a Keys) -> Vec<KeyDiff<'a>> {
    let mut keys: Vec<u32> = want.keys().chain(got.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter(|k| want.get(k) != got.get(k))
        .map(|k| (k, want.get(&k), got.get(&k)))
        .collect()
}

/// The state of one key after `op`, from `state`: one state, or none when the operation's
/// outcome contradicts that state.
fn apply_key(state: Option<&Vec<Seg>>, op: &Op, errno: i32) -> Vec<Option<Vec<Seg>>> {
    let mut keys = Keys::new();
    if let Some(s) = state {
        keys.insert(op.key, s.clone());
    }
    let cand = Cand {
        keys,
        next_purge: 0,
        open: OpenPurge::Pending,
        skipped: Vec::new(),
    };
    apply(&cand, op, errno)
        .map(|c| c.keys.get(&op.key).cloned())
        .into_iter()
        .collect()
}

/// The states one key may show to a read that started at `t0` and returned at `t1`: the
/// key's state `base` at the round's start, then its writer's operations on it, `ops`, in
/// order. Every operation acknowledged before `t0` is in, none issued after `t1`; one
/// without a definite outcome may be in or out. With `purged` (a PURGE ran meanwhile), also
/// what the operations after any point left on an empty key.
pub fn possible_values(
    base: Option<&Vec<Seg>>,
    ops: &[&Op],
    t0: Time,
    t1: Time,
    purged: bool,
) -> Vec<Option<Vec<Seg>>> {
    let must = ops.iter().take_while(|op| op.end() < t0).count();
    let may = ops.iter().take_while(|op| op.start <= t1).count();
    let mut out: Vec<Option<Vec<Seg>>> = Vec::new();
    // From the base, and (after a PURGE) from an empty key before each operation.
    let starts: Vec<(usize, Option<Vec<Seg>>)> = if purged {
        std::iter::once((0, base.cloned()))
            .chain((0..=may).map(|c| (c, None)))
            .collect()
    } else {
        vec![(0, base.cloned())]
    };
    for (from, state) in starts {
        let mut frontier = vec![state];
        for (j, op) in ops.iter().enumerate().take(may).skip(from) {
            if j >= must {
                out.extend(frontier.iter().cloned());
            }
            frontier = frontier
                .iter()
                .flat_map(|s| step_key(s.as_ref(), op))
                .collect();
            frontier.dedup();
        }
        if may >= must || from >= must {
            out.extend(frontier);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The states of a key after `op` from `state`: one, or two for an outcome in doubt.
fn step_key(state: Option<&Vec<Seg>>, op: &Op) -> Vec<Option<Vec<Seg>>> {
    match op.outcome {
        Some((e, _)) if e == 0 || definite_failure(op.code, e) => apply_key(state, op, e),
        _ => {
            let mut v = apply_key(state, op, 0);
            v.push(state.cloned());
            v
        }
    }
}

#[cfg(test)]
mod tests;
