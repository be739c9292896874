//! The guard page below each coroutine stack: it faults on any access, so a coroutine that
//! recurses too deep crashes instead of silently writing over the stack below its own.
//!
//! Read `mod.rs` first: the pool calls [`install_guards`] for the next few slots of a
//! chunk before it hands them out. How the page is made matters more than you would
//! think:
//!
//! - `mprotect(PROT_NONE)`, the classic way, splits the chunk's mapping around the page:
//!   two more mappings per stack, and Linux caps a process at `vm.max_map_count` (65,530
//!   by default), so at most about 32,600 guarded stacks. [`check_stack_budget`] counts
//!   them before the first coroutine is created.
//! - `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+) splits nothing. Older kernels refuse it
//!   with `EINVAL`, and we fall back to `mprotect` once for all.
//! - One system call per stack is itself the cost at a million stacks, so the `madvise`
//!   guards of [`GUARD_BATCH`] stacks go in one `process_madvise` call where the kernel
//!   takes it (Linux 6.13+ too), and one `madvise` per stack where it does not.

use std::cell::Cell;
use std::io;
#[cfg(target_os = "linux")]
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Stack, page_size};

/// `MADV_GUARD_INSTALL` from Linux 6.13's `<asm-generic/mman-common.h>`; the `libc`
/// crate does not have it yet.
#[cfg(target_os = "linux")]
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// How a stack's guard page was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// `madvise(MADV_GUARD_INSTALL)`: the mapping stays whole.
    Madvise,
    /// `mprotect(PROT_NONE)`: the mapping splits around each guard page.
    Mprotect,
}

thread_local! {
    /// Set by [`force_mprotect_guards`].
    static FORCE_MPROTECT: Cell<bool> = const { Cell::new(false) };
}

/// Makes this thread's new stacks use `mprotect` guard pages even where
/// `MADV_GUARD_INSTALL` works: for tests of the fallback and to show what it costs.
/// Stacks already in the pool keep their guards.
pub fn force_mprotect_guards(on: bool) {
    FORCE_MPROTECT.set(on);
}

/// How this thread's next new stack will be guarded. Maps one stack to find out, the
/// first time, whether the kernel takes `MADV_GUARD_INSTALL`.
pub fn guard_kind() -> io::Result<Guard> {
    let stack = Stack::take()?;
    let guard = stack.guard();
    stack.give_back();
    Ok(
        match FORCE_MPROTECT.get() || !MADVISE_GUARDS.load(Ordering::Relaxed) {
            true => Guard::Mprotect,
            false => guard,
        },
    )
}

// ANCHOR: budget
/// Checks, before any is created, that `coroutines` more stacks fit under
/// `vm.max_map_count`. Only `mprotect` guard pages count against it: each one splits its
/// chunk's mapping, two more mappings per stack, while `madvise` guards split nothing.
pub fn check_stack_budget(coroutines: u64) -> Result<(), shared::Error> {
    let guard = guard_kind().map_err(|e| shared::Error::io("mapping a coroutine stack", e))?;
    let Some(budget) = shared::limits::MapBudget::read() else {
        return Ok(()); // not Linux: nothing to count
    };
    const SPARE: u64 = 256; // chunks, thread stacks, libraries, the allocator's arenas
    let needed = 2 * coroutines + SPARE;
    if guard == Guard::Madvise || needed <= budget.free() {
        return Ok(());
    }
    Err(shared::Error::Limit {
        limit: format!(
            "memory-mapping limit (vm.max_map_count = {}, {} in use)",
            budget.max, budget.used
        ),
        asked: format!(
            "{coroutines} coroutine stacks with mprotect guard pages need about {needed} \
             memory mappings (2 per stack)"
        ),
        fix: format!(
            "Use at most {} coroutines, raise the limit (`sudo sysctl -w vm.max_map_count={}`), \
             or run on Linux 6.13+, whose MADV_GUARD_INSTALL guard pages split no mappings.",
            budget.free().saturating_sub(SPARE) / 2,
            budget.used + needed
        ),
    })
}
// ANCHOR_END: budget

/// Cleared for good the first time the kernel refuses `MADV_GUARD_INSTALL`.
static MADVISE_GUARDS: AtomicBool = AtomicBool::new(cfg!(target_os = "linux"));

/// Guard pages asked for at once, for this many slots of a chunk: one
/// `process_madvise` call installs them all (Linux 6.13+).
pub(super) const GUARD_BATCH: usize = 64;

/// Cleared for good the first time the kernel refuses `process_madvise` for guard pages.
#[cfg(target_os = "linux")]
static BATCHED_GUARDS: AtomicBool = AtomicBool::new(true);

/// Installs the guard pages of up to `count` consecutive slots, `slot` bytes apart, the
/// first at `first`; returns how they were made and for how many slots (at least one).
pub(super) fn install_guards(
    first: *mut u8,
    slot: usize,
    count: usize,
) -> io::Result<(Guard, usize)> {
    let force_mprotect = FORCE_MPROTECT.get();
    #[cfg(target_os = "linux")]
    if !force_mprotect && MADVISE_GUARDS.load(Ordering::Relaxed) {
        if count > 1 && BATCHED_GUARDS.load(Ordering::Relaxed) {
            match madvise_guards_at_once(first, slot, count) {
                Ok(()) => return Ok((Guard::Madvise, count)),
                // NB: `process_madvise` takes any advice for the calling process only
                // from Linux 6.13; before, or without pidfds, one call per guard page.
                Err(_) => BATCHED_GUARDS.store(false, Ordering::Relaxed),
            }
        }
        // SAFETY: `first` is the page-aligned start of a slot in a chunk we mapped; its
        // first page belongs to no stack.
        if unsafe { libc::madvise(first.cast(), page_size(), MADV_GUARD_INSTALL) } == 0 {
            return Ok((Guard::Madvise, 1));
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINVAL) {
            return Err(error);
        }
        // NB: a kernel before 6.13 does not know the advice: fall back, once for all.
        MADVISE_GUARDS.store(false, Ordering::Relaxed);
    }
    let _ = (force_mprotect, slot, count);
    // NB: one at a time: each `mprotect` guard costs two mappings of a limited budget.
    // SAFETY: as above; the page becomes inaccessible and nothing was using it.
    if unsafe { libc::mprotect(first.cast(), page_size(), libc::PROT_NONE) } != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ENOMEM) {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "out of memory mappings for coroutine guard pages (each mprotect guard \
                 splits a mapping, and vm.max_map_count caps them): raise \
                 vm.max_map_count, or use Linux 6.13+ where MADV_GUARD_INSTALL does not \
                 split mappings",
            ));
        }
        return Err(error);
    }
    Ok((Guard::Mprotect, 1))
}

/// `MADV_GUARD_INSTALL` on the first page of `count` slots in one `process_madvise` call.
///
/// Installing a guard page costs little; entering the kernel once per stack costs more
/// (1.5 against 0.5 microseconds per stack, measured here at a million stacks).
#[cfg(target_os = "linux")]
fn madvise_guards_at_once(first: *mut u8, slot: usize, count: usize) -> io::Result<()> {
    let mut ranges = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; GUARD_BATCH];
    // NB: a `count` over `GUARD_BATCH` panics here rather than leave stacks unguarded.
    for (i, range) in ranges[..count].iter_mut().enumerate() {
        *range = libc::iovec {
            iov_base: first.wrapping_add(i * slot).cast(),
            iov_len: page_size(),
        };
    }
    // NB: opened per batch, not kept: a pidfd kept in a static would still name the parent
    // in a forked child, and guard the parent's pages instead of the child's.
    // SAFETY: `pidfd_open` takes a pid and flags, and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if pidfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the `count` ranges are each the first page of a slot in a chunk we mapped,
    // which no stack uses; the advice changes no contents.
    let advised = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            pidfd,
            ranges.as_ptr(),
            count,
            MADV_GUARD_INSTALL,
            0,
        )
    };
    let error = io::Error::last_os_error();
    // SAFETY: we opened `pidfd` above and nothing else has it.
    unsafe { libc::close(pidfd as libc::c_int) };
    match usize::try_from(advised) {
        Ok(bytes) if bytes == count * page_size() => Ok(()),
        Ok(bytes) => Err(io::Error::other(format!(
            "process_madvise advised {bytes} of {} bytes",
            count * page_size()
        ))),
        Err(_) => Err(error),
    }
}
