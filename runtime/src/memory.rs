//! How much freed heap the process keeps.
//!
//! Compiling a module allocates tens of MiB (cranelift's buffers, on the compiling threads'
//! malloc arenas) and frees them. glibc raises its trim and mmap thresholds after a large
//! block is freed (up to 32 and 64 MiB), and an arena other than the main one gives back the
//! free space at its end only above the trim threshold — `malloc_trim` does not touch it. So a
//! proxy that compiled the four policy filters at start kept 11–24 MiB of free heap resident
//! for good: it idled at 37–50 MiB where one that loaded them from the module cache idled at
//! 20.5 MiB. With the thresholds fixed at glibc's own defaults (128 KiB), it idles at 29 MiB
//! (the rest over the cached start is the freshly written module files in the page cache,
//! shared), and the CPU per request did not move (bench/results/2026-12-07-guest-side.md).

/// glibc's default trim and mmap thresholds, which fixing them keeps from growing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const THRESHOLD: libc::c_int = 128 << 10;

/// Have the allocator give freed memory back to the kernel as glibc does by default, before
/// its thresholds adapt upwards. Processes that compile modules call it first thing in
/// `main`: `weft-proxy`, `weft-controlplane`. A no-op where the allocator is not glibc's.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets glibc's tunables under its own lock; it takes no pointers.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
    }
}
