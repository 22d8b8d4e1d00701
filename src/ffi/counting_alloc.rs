//! Tests only: the global allocator, counting the bytes each thread holds, so that a test can
//! measure what a data structure costs (the listing cursors of open files: device.rs).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread.
    static NET_BYTES: Cell<i64> = const { Cell::new(0) };
}

pub struct Counting;

fn count(delta: i64) {
    // try_with: a thread being torn down has no counter left; its frees are not counted.
    let _ = NET_BYTES.try_with(|n| n.set(n.get() + delta));
}

fn bytes(layout: Layout) -> i64 {
    i64::try_from(layout.size()).expect("an allocation below 2^63 bytes")
}

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged, so it upholds GlobalAlloc's contract exactly as System does; the counter is a
// const-initialised thread-local Cell, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(bytes(layout));
        // SAFETY: as above.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(bytes(layout));
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-bytes(layout));
        // SAFETY: as above; `ptr` came from this allocator, that is from System.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(i64::try_from(new_size).expect("below 2^63") - bytes(layout));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Bytes this thread holds now, net of what it freed, since it started.
pub fn thread_net_bytes() -> i64 {
    NET_BYTES.with(Cell::get)
}
