//! Locks with a place in the engine's lock order, checked on every acquisition.
//!
//! Every lock of the engine's shared state has a [`Level`]. A thread may take a lock only
//! while every lock it holds has a strictly lower level; so no two threads can each hold a
//! lock the other waits for (no deadlock), and no thread takes a lock twice. The order is
//! (DESIGN.md, "Lock order"):
//!
//! | level | lock | taken by |
//! |---|---|---|
//! | 0 | [`Level::Handle`]: the engine handle's sender and thread list | `submit`, `close` |
//! | 1 | [`Level::Commit`]: the committer (its holder is the leader) | writers, the timer, `close` |
//! | 2 | [`Level::Compaction`]: compaction's state | a compaction round, purge, verification |
//! | 3 | [`Level::Superblock`]: the superblock in memory | purge, snapshot, verification |
//! | 4 | [`Level::Index`]: the index (a read-write lock) | everyone |
//! | 5 | [`Level::Space`]: the segment table | allocation, sealing, stats |
//!
//! The value cache and the test device lock internally and call nothing back: leaves below
//! every level. In debug builds (every test) each thread keeps the set of levels it holds
//! and an out-of-order acquisition panics at once, naming both locks; release builds skip
//! the bookkeeping.

use std::ops::{Deref, DerefMut};

use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A lock's place in the order: a thread takes locks in increasing level only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Handle = 0,
    Commit = 1,
    Compaction = 2,
    Superblock = 3,
    Index = 4,
    Space = 5,
}

#[cfg(debug_assertions)]
mod held {
    use std::cell::Cell;

    use crate::lock::Level;

    thread_local! {
        /// Bit `n` set: this thread holds a lock of level `n`.
        static HELD: Cell<u32> = const { Cell::new(0) };
    }

    pub(super) fn enter(level: Level) {
        HELD.with(|held| {
            let mask = held.get();
            let bit = 1u32 << (level as u32);
            assert!(
                mask >> (level as u32) == 0,
                "lock order violated: taking {level:?} while holding levels {mask:#b} \
                 (a lock at or above it)"
            );
            held.set(mask | bit);
        });
    }

    pub(super) fn leave(level: Level) {
        HELD.with(|held| held.set(held.get() & !(1u32 << (level as u32))));
    }
}

#[cfg(not(debug_assertions))]
mod held {
    use crate::lock::Level;
    pub(super) fn enter(_: Level) {}
    pub(super) fn leave(_: Level) {}
}

/// Proof that this thread holds a lock of `level`; dropping it gives the level back.
struct Token(Level);

impl Token {
    fn take(level: Level) -> Token {
        held::enter(level);
        Token(level)
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        held::leave(self.0);
    }
}

/// A held lock: the lock's own guard, then this thread's claim on the lock's level (dropped
/// in that order: the lock is let go before the level is given back).
pub(crate) struct Held<G> {
    inner: G,
    _token: Token,
}

impl<G: Deref> Deref for Held<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.inner
    }
}

impl<G: DerefMut> DerefMut for Held<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.inner
    }
}

/// The guard of an [`OrderedMutex`].
pub(crate) type Guard<'a, T> = Held<MutexGuard<'a, T>>;
/// The guard of an [`OrderedLongMutex`].
pub(crate) type LongGuard<'a, T> = Held<std::sync::MutexGuard<'a, T>>;
/// A shared guard of an [`OrderedRwLock`].
pub(crate) type ReadGuard<'a, T> = Held<RwLockReadGuard<'a, T>>;
/// An exclusive guard of an [`OrderedRwLock`].
pub(crate) type WriteGuard<'a, T> = Held<RwLockWriteGuard<'a, T>>;

/// A mutex with a level in the lock order.
pub(crate) struct OrderedMutex<T> {
    level: Level,
    inner: Mutex<T>,
}

impl<T> OrderedMutex<T> {
    pub(crate) const fn new(level: Level, value: T) -> OrderedMutex<T> {
        OrderedMutex {
            level,
            inner: Mutex::new(value),
        }
    }

    /// Takes the lock; panics (debug builds) if that breaks the lock order.
    pub(crate) fn lock(&self) -> Guard<'_, T> {
        let token = Token::take(self.level);
        Held {
            inner: self.inner.lock(),
            _token: token,
        }
    }
}

/// An ordered mutex for a lock held across device I/O (the committer's, held while a batch is
/// staged and written): a thread that finds it taken sleeps in the kernel (`futex`) after a
/// short busy wait, where [`OrderedMutex`] (`parking_lot`) spins and then calls
/// `sched_yield` up to seven times before it sleeps. A holder does not let go within a few
/// spins here, so those yields were only system calls and context switches: with 8 writers
/// in the VM, about one `sched_yield` for every three writes, most of them leaders coming
/// back from their flush to a lock the next leader holds (README, "Through the device").
/// A panic under the lock does not poison it for the others, as with `parking_lot`.
pub(crate) struct OrderedLongMutex<T> {
    level: Level,
    inner: std::sync::Mutex<T>,
}

/// How often [`OrderedLongMutex::try_lock_for`] looks again.
const TRY_LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(1);

impl<T> OrderedLongMutex<T> {
    pub(crate) const fn new(level: Level, value: T) -> OrderedLongMutex<T> {
        OrderedLongMutex {
            level,
            inner: std::sync::Mutex::new(value),
        }
    }

    /// Takes the lock; panics (debug builds) if that breaks the lock order.
    pub(crate) fn lock(&self) -> LongGuard<'_, T> {
        let token = Token::take(self.level);
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Held {
            inner,
            _token: token,
        }
    }

    /// Takes the lock if it is free. A failed attempt cannot deadlock, so it is not checked
    /// against the order (it also fails, rather than deadlocking, on a lock this thread
    /// holds); a successful one counts as held like any other.
    pub(crate) fn try_lock(&self) -> Option<LongGuard<'_, T>> {
        let inner = match self.inner.try_lock() {
            Ok(inner) => inner,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(Held {
            inner,
            _token: Token::take(self.level),
        })
    }

    /// Waits at most about `wait` for the lock, looking every millisecond (only the
    /// shutdown waits so); checked against the order like [`Self::lock`].
    pub(crate) fn try_lock_for(&self, wait: std::time::Duration) -> Option<LongGuard<'_, T>> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            if let Some(guard) = self.try_lock() {
                return Some(guard);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::sleep(TRY_LOCK_POLL.min(deadline - now));
        }
    }
}

/// A read-write lock with a level in the lock order (readers and writers alike).
pub(crate) struct OrderedRwLock<T> {
    level: Level,
    inner: RwLock<T>,
}

impl<T> OrderedRwLock<T> {
    pub(crate) const fn new(level: Level, value: T) -> OrderedRwLock<T> {
        OrderedRwLock {
            level,
            inner: RwLock::new(value),
        }
    }

    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        let token = Token::take(self.level);
        Held {
            inner: self.inner.read(),
            _token: token,
        }
    }

    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        let token = Token::take(self.level);
        Held {
            inner: self.inner.write(),
            _token: token,
        }
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;

    #[test]
    fn locks_in_increasing_level_are_fine_and_levels_come_back() {
        let index = OrderedRwLock::new(Level::Index, ());
        let space = OrderedMutex::new(Level::Space, ());
        {
            let _i = index.read();
            let _s = space.lock();
        }
        // Both released: taking them again in any order works.
        drop(space.lock());
        drop(index.write());
    }

    #[test]
    #[should_panic(expected = "lock order violated")]
    fn a_lower_level_under_a_higher_one_panics() {
        let index = OrderedRwLock::new(Level::Index, ());
        let space = OrderedMutex::new(Level::Space, ());
        let _s = space.lock();
        let _i = index.read();
    }

    #[test]
    fn a_long_mutex_waits_for_its_holder_within_the_bound_and_keeps_the_order() {
        let commit = std::sync::Arc::new(OrderedLongMutex::new(Level::Commit, 0u32));
        let held = commit.lock();
        let other = commit.clone();
        let waiter = std::thread::spawn(move || {
            let short = other.try_lock_for(std::time::Duration::from_millis(20));
            assert!(short.is_none(), "the holder kept it for longer");
            drop(short);
            let mut long = other
                .try_lock_for(std::time::Duration::from_secs(30))
                .expect("the holder lets go");
            *long += 1;
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(held);
        waiter.join().unwrap();
        let space = OrderedMutex::new(Level::Space, ());
        let space_held = space.lock();
        let ordered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(commit.lock());
        }));
        assert!(ordered.is_err(), "a lower level under a higher one panics");
        drop(space_held);
        assert_eq!(*commit.try_lock().expect("free"), 1);
    }

    #[test]
    #[should_panic(expected = "lock order violated")]
    fn the_same_level_twice_panics() {
        let index = OrderedRwLock::new(Level::Index, ());
        let _a = index.read();
        let _b = index.read();
    }
}
