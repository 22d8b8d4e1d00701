//! The verifier must catch what it is there to catch: each test builds a log by hand and an
//! observation that a correct store may or may not show.

use super::*;

/// Builds a writer's events; time advances by 10 per step.
struct W {
    events: Vec<Event>,
    seq: u64,
    t: u64,
}

impl W {
    fn new(t: u64) -> W {
        W {
            events: Vec::new(),
            seq: 0,
            t,
        }
    }

    fn op(&mut self, code: OpCode, key: u32, len: u32, outcome: Option<i32>) -> u64 {
        self.seq += 1;
        let start = (1, self.t);
        self.t += 10;
        let op = Op {
            seq: self.seq,
            code,
            key,
            len,
            start,
            outcome: outcome.map(|e| (e, (1, self.t))),
        };
        self.t += 10;
        self.events.push(Event::Op(op));
        self.seq
    }

    fn put(&mut self, key: u32) -> u64 {
        self.op(OpCode::Insert, key, 100, Some(0))
    }
}

fn keys(pairs: &[(u32, &[u64])]) -> Keys {
    pairs
        .iter()
        .map(|&(k, seqs)| {
            let segs = seqs.iter().map(|&seq| Seg { seq, len: 100 }).collect();
            (k, segs)
        })
        .collect()
}

fn history(writers: Vec<Vec<Event>>, purges: Vec<Purge>) -> History {
    History {
        writers,
        purges,
        ..History::default()
    }
}

#[test]
fn acknowledged_writes_must_all_be_there() {
    let mut w = W::new(0);
    let put1 = w.put(1);
    let put2 = w.put(2);
    let append2 = w.op(OpCode::PartialUpdate, 2, 100, Some(0));
    let h = history(vec![w.events], vec![]);
    assert!(verify(&h, &[keys(&[(1, &[put1]), (2, &[put2, append2])])]).is_ok());
    let lost = verify(&h, &[keys(&[(1, &[put1]), (2, &[put2])])]).unwrap_err();
    assert!(lost.contains("key 2"), "{lost}");
    assert!(
        verify(&h, &[keys(&[(2, &[put2, append2])])]).is_err(),
        "key 1 lost"
    );
    let extra = keys(&[(1, &[put1]), (2, &[put2, append2]), (3, &[put1])]);
    assert!(verify(&h, &[extra]).is_err());
}

#[test]
fn the_one_operation_in_flight_may_or_may_not_be_there() {
    let mut w = W::new(0);
    let a = w.put(1);
    let b = w.op(OpCode::WritePut, 1, 100, None);
    let h = history(vec![w.events.clone()], vec![]);
    assert!(verify(&h, &[keys(&[(1, &[a])])]).is_ok());
    assert!(verify(&h, &[keys(&[(1, &[b])])]).is_ok());
    assert!(
        verify(&h, &[keys(&[])]).is_err(),
        "the acknowledged put is lost"
    );
    // EIO says nothing either; ENOSPC says "not applied".
    let mut w2 = W::new(0);
    let a2 = w2.put(1);
    let b2 = w2.op(OpCode::WriteAppend, 1, 100, Some(libc::EIO));
    let h = history(vec![w2.events], vec![]);
    assert!(verify(&h, &[keys(&[(1, &[a2, b2])])]).is_ok());
    assert!(verify(&h, &[keys(&[(1, &[a2])])]).is_ok());
    let mut w3 = W::new(0);
    let a3 = w3.put(1);
    let b3 = w3.op(OpCode::Insert, 1, 100, Some(libc::ENOSPC));
    let h = history(vec![w3.events], vec![]);
    assert!(verify(&h, &[keys(&[(1, &[a3])])]).is_ok());
    assert!(verify(&h, &[keys(&[(1, &[b3])])]).is_err());
}

#[test]
fn deleted_keys_stay_deleted_and_errnos_must_fit() {
    let mut w = W::new(0);
    w.put(1);
    w.op(OpCode::Delete, 1, 0, Some(0));
    w.op(OpCode::Delete, 1, 0, Some(libc::ENOENT));
    let h = history(vec![w.events.clone()], vec![]);
    assert!(verify(&h, &[keys(&[])]).is_ok());
    let back = verify(&h, &[keys(&[(1, &[1])])]).unwrap_err();
    assert!(back.contains("absent"), "{back}");
    // An acknowledged DELETE of a key that cannot be there contradicts the log.
    let mut w = W::new(0);
    w.op(OpCode::Delete, 5, 0, Some(0));
    let h = history(vec![w.events], vec![]);
    assert!(verify(&h, &[keys(&[])]).unwrap_err().contains("no state"));
    // ENOENT for a key that must be there, too.
    let mut w = W::new(0);
    w.put(5);
    w.op(OpCode::Delete, 5, 0, Some(libc::ENOENT));
    let h = history(vec![w.events], vec![]);
    assert!(verify(&h, &[keys(&[(5, &[1])])]).is_err());
}

#[test]
fn append_past_the_limit_must_be_refused() {
    let mut w = W::new(0);
    let big = w.op(OpCode::Insert, 1, 102_000, Some(0));
    w.op(OpCode::PartialUpdate, 1, 500, Some(libc::EMSGSIZE));
    let h = history(vec![w.events], vec![]);
    let obs: Keys = [(
        1,
        vec![Seg {
            seq: big,
            len: 102_000,
        }],
    )]
    .into_iter()
    .collect();
    assert!(verify(&h, &[obs]).is_ok());
    let mut w = W::new(0);
    w.op(OpCode::Insert, 1, 100, Some(0));
    w.op(OpCode::PartialUpdate, 1, 500, Some(libc::EMSGSIZE));
    let h = history(vec![w.events], vec![]);
    assert!(
        verify(&h, &[keys(&[(1, &[1])])]).is_err(),
        "EMSGSIZE for a short value"
    );
}

#[test]
fn purge_erases_what_came_before_and_keeps_what_came_after() {
    // Writer: puts at t=0..20 (key 1), 20..40 (key 2), 40..60 (key 3), 60..80 (key 4).
    let mut w = W::new(0);
    for k in 1..=4 {
        w.put(k);
    }
    // The PURGE ran from 25 to 45: put 1 is before it, put 4 after, puts 2 and 3 overlap.
    let p = Purge {
        seq: 1,
        start: (1, 25),
        end: (1, 45),
        optional: false,
    };
    let h = history(vec![w.events], vec![p]);
    assert!(verify(&h, &[keys(&[(4, &[4])])]).is_ok());
    assert!(verify(&h, &[keys(&[(3, &[3]), (4, &[4])])]).is_ok());
    assert!(verify(&h, &[keys(&[(2, &[2]), (3, &[3]), (4, &[4])])]).is_ok());
    assert!(verify(&h, &[keys(&[(1, &[1]), (2, &[2]), (3, &[3]), (4, &[4])])]).is_err());
    assert!(
        verify(&h, &[keys(&[])]).is_err(),
        "put 4 came after the PURGE"
    );
    // One cut for all the writer's keys: 2 kept but 3 erased is not a point in time.
    assert!(verify(&h, &[keys(&[(2, &[2]), (4, &[4])])]).is_err());
}

#[test]
fn an_uncertain_purge_is_all_or_nothing_across_writers() {
    let mut first = W::new(0);
    first.put(1);
    let mut second = W::new(5);
    second.put(1);
    let purge = Purge {
        seq: 1,
        start: (1, 100),
        end: NEVER,
        optional: true,
    };
    let h = history(vec![first.events, second.events], vec![purge]);
    let kept = keys(&[(1, &[1])]);
    let v = verify(&h, &[kept.clone(), kept.clone()]).unwrap();
    assert_eq!(v.decision, Some((1, false)));
    let v = verify(&h, &[keys(&[]), keys(&[])]).unwrap();
    assert_eq!(v.decision, Some((1, true)));
    let half = verify(&h, &[kept, keys(&[])]).unwrap_err();
    assert!(half.contains("not atomic"), "{half}");
}

#[test]
fn a_settled_state_cannot_change_later() {
    let mut w = W::new(0);
    w.put(1);
    let b = w.op(OpCode::Insert, 1, 100, None);
    // The first verification saw the in-flight put applied.
    let seen = keys(&[(1, &[b])]);
    let mut events = w.events.clone();
    events.push(Event::Settle {
        at: (1, 1000),
        digest: digest(&seen),
    });
    let h = history(vec![events], vec![]);
    assert!(verify(&h, &[seen]).is_ok());
    assert!(
        verify(&h, &[keys(&[(1, &[1])])]).is_err(),
        "the put may not vanish later"
    );
}

#[test]
fn a_read_sees_a_prefix_that_holds_what_was_acknowledged_before_it() {
    // Key 1: put 1 at 0..10, append 2 at 20..30, put 3 at 40..50 (acknowledged at 50).
    let mut w = W::new(0);
    w.put(1);
    w.op(OpCode::PartialUpdate, 1, 100, Some(0));
    w.put(1);
    let ops: Vec<&Op> = w
        .events
        .iter()
        .map(|e| match e {
            Event::Op(op) => op,
            Event::Settle { .. } => unreachable!(),
        })
        .collect();
    let segs = |seqs: &[u64]| {
        Some(
            seqs.iter()
                .map(|&seq| Seg { seq, len: 100 })
                .collect::<Vec<_>>(),
        )
    };
    // A read from 35 to 45: the append was acknowledged (at 30), the last put may be in.
    let p = possible_values(None, &ops, (1, 35), (1, 45), false);
    assert_eq!(p, vec![segs(&[1, 2]), segs(&[3])]);
    // From 5 to 15: before anything, or after the first put.
    let p = possible_values(None, &ops, (1, 5), (1, 15), false);
    assert_eq!(p, vec![None, segs(&[1])]);
    // From 55 on: only the last put.
    assert_eq!(
        possible_values(None, &ops, (1, 55), (1, 60), false),
        vec![segs(&[3])]
    );
    // A PURGE meanwhile: also what the operations after it left.
    let p = possible_values(None, &ops, (1, 35), (1, 45), true);
    assert!(p.contains(&None) && p.contains(&segs(&[2])) && p.contains(&segs(&[1, 2])));
    assert!(
        !p.contains(&segs(&[1])),
        "the append was acknowledged before the read"
    );
}

#[test]
fn history_pairs_records_and_applies_decisions() {
    use crate::log::{Kind, Record};
    let rec = |kind, op, seq, ts, errno| {
        let mut r = Record::new(kind, op, 1, seq);
        r.ts_ns = ts;
        r.errno = errno;
        r.key = 2;
        r.len = 100;
        r
    };
    let writer = vec![
        rec(Kind::Intent, OpCode::Insert, 1, 10, 0),
        rec(Kind::Outcome, OpCode::Insert, 1, 20, 0),
        rec(Kind::Intent, OpCode::Insert, 2, 30, 0),
    ];
    let purger = vec![rec(Kind::Intent, OpCode::Purge, 1, 25, 0)];
    let mut decision = rec(Kind::Decision, OpCode::None, 1, 90, 0);
    decision.flag = 1;
    let h = History::build(std::slice::from_ref(&writer), &purger, &[decision]).unwrap();
    assert_eq!((h.operations, h.acknowledged), (3, 1));
    assert_eq!(h.purges.len(), 1);
    assert!(!h.purges[0].optional);
    // Decided applied at 90: put 1 (acknowledged at 20, before the PURGE) is erased, and
    // put 2 (in flight) may be there or not.
    assert!(verify(&h, &[keys(&[])]).is_ok());
    assert!(verify(&h, &[keys(&[(2, &[2])])]).is_ok());
    assert!(verify(&h, &[keys(&[(2, &[1])])]).is_err());
    let bad = vec![rec(Kind::Outcome, OpCode::Insert, 7, 10, 0)];
    assert!(History::build(&[bad], &[], &[]).is_err());
}
