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

/// A mutex with a level in the lock order.
pub(crate) struct OrderedMutex<T> {
    level: Level,
    inner: Mutex<T>,
}

/// The guard of an [`OrderedMutex`].
pub(crate) struct Guard<'a, T> {
    // Field order matters: the lock is released before the level is given back.
    inner: MutexGuard<'a, T>,
    _token: Token,
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
        Guard {
            inner: self.inner.lock(),
            _token: token,
        }
    }

    /// Takes the lock if it is free. A failed attempt cannot deadlock, so it is not checked
    /// against the order (it also fails, rather than deadlocking, on a lock this thread
    /// holds); a successful one counts as held like any other.
    pub(crate) fn try_lock(&self) -> Option<Guard<'_, T>> {
        let inner = self.inner.try_lock()?;
        Some(Guard {
            inner,
            _token: Token::take(self.level),
        })
    }

    /// Waits at most `wait` for the lock; checked against the order like [`Self::lock`].
    pub(crate) fn try_lock_for(&self, wait: std::time::Duration) -> Option<Guard<'_, T>> {
        let token = Token::take(self.level);
        let inner = self.inner.try_lock_for(wait)?;
        Some(Guard {
            inner,
            _token: token,
        })
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

/// A read-write lock with a level in the lock order (readers and writers alike).
pub(crate) struct OrderedRwLock<T> {
    level: Level,
    inner: RwLock<T>,
}

/// A shared guard of an [`OrderedRwLock`].
pub(crate) struct ReadGuard<'a, T> {
    inner: RwLockReadGuard<'a, T>,
    _token: Token,
}

/// An exclusive guard of an [`OrderedRwLock`].
pub(crate) struct WriteGuard<'a, T> {
    inner: RwLockWriteGuard<'a, T>,
    _token: Token,
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
        ReadGuard {
            inner: self.inner.read(),
            _token: token,
        }
    }

    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        let token = Token::take(self.level);
        WriteGuard {
            inner: self.inner.write(),
            _token: token,
        }
    }
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
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
    #[should_panic(expected = "lock order violated")]
    fn the_same_level_twice_panics() {
        let index = OrderedRwLock::new(Level::Index, ());
        let _a = index.read();
        let _b = index.read();
    }
}
