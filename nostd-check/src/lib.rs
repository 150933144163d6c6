//! Build-only: links mulki-core (`default-features = false, features = ["cpu"]`) into a `no_std`
//! staticlib. Nothing here is meant to run. The `#[panic_handler]` below collides with std's
//! ("found duplicate lang item `panic_impl`") as soon as any crate in the graph links std, which
//! is what makes this a check.
#![no_std]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicUsize, Ordering};

use mulki_core::clip::config::ClipConfig;
use mulki_core::cpu::CpuBackend;

/// Validates the default CLIP config; 0 if valid. Exported so the code above is really linked.
#[no_mangle]
pub extern "C" fn mulki_nostd_check_config() -> i32 {
    match ClipConfig::default().validate() {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Builds a CPU backend (exercises the `cpu` feature and its dependencies).
#[no_mangle]
pub extern "C" fn mulki_nostd_check_cpu() -> usize {
    let backend = CpuBackend::<f32>::new(1);
    core::mem::size_of_val(&backend)
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

/// A bump allocator over a static array; never frees. Only there so `alloc` links.
struct Bump {
    heap: UnsafeCell<[u8; HEAP]>,
    next: AtomicUsize,
}

const HEAP: usize = 1 << 16;

// SAFETY: `next` hands out disjoint ranges of `heap` (atomically), so threads never share bytes.
unsafe impl Sync for Bump {}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.heap.get() as usize;
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + cur).next_multiple_of(layout.align()) - base;
            let end = match start.checked_add(layout.size()) {
                Some(end) if end <= HEAP => end,
                _ => return core::ptr::null_mut(),
            };
            match self.next.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return (self.heap.get() as *mut u8).add(start),
                Err(actual) => cur = actual,
            }
        }
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}

#[global_allocator]
static ALLOC: Bump = Bump { heap: UnsafeCell::new([0; HEAP]), next: AtomicUsize::new(0) };
