//! The table of tracked descriptors: which node (if any) each descriptor number is open on.
//!
//! One atomic word per descriptor number below [`FDS_MAX`] (a static array: no allocation, no
//! lock). A word of 0 means "not known to be an hpkv node": the real `ioctl` answers. Every
//! interposed call that creates a descriptor writes its word (clearing a stale one); every
//! call that closes or replaces one clears it before the descriptor goes away. Losing track of
//! a descriptor is always safe (the device answers); the interposers keep the other direction
//! (a word naming a node for a descriptor that is no longer on it) from happening through the
//! C library's functions.

use std::sync::atomic::{AtomicU32, Ordering};

/// Descriptors numbered this high or higher are never tracked (the device answers them).
pub const FDS_MAX: usize = 1 << 16;

/// The descriptor was opened through stdio (`fopen`): `fcloseall` forgets it.
const FROM_STDIO: u32 = 1 << 31;
const NODE_MASK: u32 = 0xff;

static FDS: [AtomicU32; FDS_MAX] = [const { AtomicU32::new(0) }; FDS_MAX];

/// What the table says about a tracked descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Index of its node in [`crate::nodes`].
    pub node: u8,
    /// Opened with `fopen`/`freopen`.
    pub from_stdio: bool,
}

impl Entry {
    fn encode(self) -> u32 {
        // 0 is "untracked", so node indexes are stored plus one.
        (u32::from(self.node) + 1) | if self.from_stdio { FROM_STDIO } else { 0 }
    }

    fn decode(word: u32) -> Option<Entry> {
        let node = (word & NODE_MASK).checked_sub(1)?;
        Some(Entry {
            node: u8::try_from(node).ok()?,
            from_stdio: word & FROM_STDIO != 0,
        })
    }
}

fn slot(fd: i32) -> Option<&'static AtomicU32> {
    FDS.get(usize::try_from(fd).ok()?)
}

/// The node `fd` is open on, if tracked.
#[inline]
pub fn get(fd: i32) -> Option<Entry> {
    Entry::decode(slot(fd)?.load(Ordering::Acquire))
}

/// Records what `fd` now refers to (`None`: not an hpkv node).
pub fn set(fd: i32, entry: Option<Entry>) {
    if let Some(word) = slot(fd) {
        word.store(entry.map_or(0, Entry::encode), Ordering::Release);
    }
}

/// Forgets `fd` (it is being closed or replaced).
pub fn clear(fd: i32) {
    set(fd, None);
}

/// Forgets every descriptor from `first` to `last`, both included.
pub fn clear_range(first: u32, last: u32) {
    let Ok(first) = usize::try_from(first) else {
        return;
    };
    let last = usize::try_from(last).unwrap_or(usize::MAX).min(FDS_MAX - 1);
    for word in FDS.get(first..=last).unwrap_or(&[]) {
        if word.load(Ordering::Relaxed) != 0 {
            word.store(0, Ordering::Release);
        }
    }
}

/// Forgets every descriptor opened through stdio (`fcloseall`).
pub fn clear_stdio() {
    for word in &FDS {
        if word.load(Ordering::Relaxed) & FROM_STDIO != 0 {
            word.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_clear() {
        let e = Entry {
            node: 3,
            from_stdio: true,
        };
        set(10, Some(e));
        set(11, Some(Entry { node: 0, ..e }));
        assert_eq!(get(10), Some(e));
        assert_eq!(get(11).map(|e| e.node), Some(0));
        set(10, None);
        assert_eq!(get(10), None);
        set(12, Some(e));
        set(
            13,
            Some(Entry {
                from_stdio: false,
                ..e
            }),
        );
        clear_stdio();
        assert_eq!(get(12), None);
        assert!(get(13).is_some());
        clear_range(11, u32::MAX);
        assert_eq!((get(11), get(13)), (None, None));
        assert_eq!(get(-1), None);
        assert_eq!(get(i32::MAX), None);
        set(i32::MAX, Some(e)); // ignored
        clear(70_000);
    }
}
