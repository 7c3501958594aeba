//! The global allocator of the binary and the benches: the system's, asking the kernel for transparent huge pages on
//! large allocations. The clustering's n×n matrices are half a gigabyte each at 8,000 failing images, and a stage
//! allocates dozens of them; mapped 4 KB at a time, their page faults took a fifth of the `cluster` stage's time
//! (17 million faults, 58 s of system time at 8,598 failures). Where the kernel grants huge pages only on request
//! (`/sys/kernel/mm/transparent_hugepage/enabled` set to `madvise`, Debian's default), this asks; where it grants
//! them always or never, the request changes nothing. Contents are the allocator's as ever: no byte of any output
//! depends on it.

use std::alloc::{GlobalAlloc, Layout, System};

/// The system allocator, with huge pages requested for allocations of at least [`LARGE`] bytes.
pub struct HugePages;

/// Allocations this large (and larger) get huge pages: glibc maps them on their own, so the advice covers no other
/// allocation's memory.
pub const LARGE: usize = 64 << 20;

/// A huge page on x86-64 and aarch64 with 4 KB base pages.
const HUGE: usize = 2 << 20;

// SAFETY: every call is the system allocator's; `advise` only advises the kernel on memory the allocation owns.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        // SAFETY: as above.
        let q = unsafe { System.realloc(p, layout, size) };
        advise(q, size);
        q
    }
}

/// Asks for huge pages on the whole 2 MB pages inside `[p, p + len)`, for a large allocation (a failed request is
/// harmless: the memory is mapped as it would have been).
fn advise(p: *mut u8, len: usize) {
    if p.is_null() || len < LARGE {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let start = (p as usize).next_multiple_of(HUGE);
        let end = (p as usize + len) / HUGE * HUGE;
        if end > start {
            // SAFETY: the range lies inside the allocation just made; the advice does not change its contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_zeroed_allocation_is_zero_and_usable() {
        let layout = Layout::from_size_align(LARGE + 12_345, 8).unwrap();
        // SAFETY: a non-zero size; freed with the same layout.
        unsafe {
            let p = HugePages.alloc_zeroed(layout);
            assert!(!p.is_null());
            let bytes = std::slice::from_raw_parts_mut(p, layout.size());
            assert!(bytes.iter().step_by(4096).all(|&b| b == 0));
            bytes[layout.size() - 1] = 7;
            let q = HugePages.realloc(p, layout, 2 * LARGE);
            assert_eq!(*q.add(layout.size() - 1), 7);
            HugePages.dealloc(q, Layout::from_size_align(2 * LARGE, 8).unwrap());
        }
    }
}
