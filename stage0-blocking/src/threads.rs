//! Where threads stop scaling, checked before we get there.
//!
//! The kernel does not run out of threads gracefully. `std::thread::spawn` panics when
//! the OS says no, and past the memory-mapping cap a thread that *was* created can still
//! abort the whole process while it sets up its signal stack (`failed to set up
//! alternative stack guard page`). So we spawn with `Builder` (which returns the error)
//! and, before spawning at all, check that the threads fit in `vm.max_map_count`.

use std::io;
use std::thread;

use shared::Error;
use shared::limits::MapBudget;

/// Stack size of every thread this stage starts. The default is 2 MiB of address space;
/// our threads only make one request or sleep, and only the pages they touch become
/// resident, a few KiB each.
pub const THREAD_STACK_SIZE: usize = 64 * 1024;

/// Memory mappings one live thread costs on Linux: its stack and the stack's guard page,
/// its signal stack and that one's guard page (measured here with `/proc/self/maps`).
pub const MAPS_PER_THREAD: u64 = 4;

/// Mappings left free for everything else: the allocator's arenas, libraries, sockets.
const MAPS_RESERVE: u64 = 2_000;

/// A thread builder with this stage's stack size.
pub(crate) fn builder() -> thread::Builder {
    thread::Builder::new().stack_size(THREAD_STACK_SIZE)
}

// ANCHOR: check_thread_budget
/// Refuses, with the limit named, `threads` more live threads than the process's
/// memory-mapping budget (Linux) or thread cap (macOS) allows.
pub fn check_thread_budget(threads: u64) -> Result<(), Error> {
    check_thread_cap(threads)?;
    let Some(budget) = MapBudget::read() else {
        return Ok(()); // no /proc: Builder::spawn's error is all we get
    };
    let needed = threads * MAPS_PER_THREAD + MAPS_RESERVE;
    if needed <= budget.free() {
        return Ok(());
    }
    let fits = budget.free().saturating_sub(MAPS_RESERVE) / MAPS_PER_THREAD;
    Err(Error::Limit {
        limit: format!(
            "memory-mapping limit (vm.max_map_count = {}, {} in use)",
            budget.max, budget.used
        ),
        asked: format!(
            "{threads} threads need about {needed} memory mappings \
             ({MAPS_PER_THREAD} per thread)"
        ),
        fix: format!(
            "Use at most {fits} threads, or raise the limit: `sudo sysctl -w \
             vm.max_map_count={}`. The event loops of stages 1 to 4 need no thread per task.",
            budget.used + needed
        ),
    })
}
// ANCHOR_END: check_thread_budget

/// Threads kept free for the rest of the process (main, server, test harness).
#[cfg(target_vendor = "apple")]
const THREADS_RESERVE: u64 = 16;

/// macOS caps the threads of one process at `kern.num_taskthreads` (thousands, fixed by
/// the kernel); past it, thread creation fails. Check first, like the mapping budget.
#[cfg(target_vendor = "apple")]
fn check_thread_cap(threads: u64) -> Result<(), Error> {
    let Some(cap) = shared::limits::sysctl_int(c"kern.num_taskthreads") else {
        return Ok(());
    };
    let needed = threads.saturating_add(THREADS_RESERVE);
    if needed <= cap {
        return Ok(());
    }
    Err(Error::Limit {
        limit: format!("per-process thread limit (kern.num_taskthreads = {cap})"),
        asked: format!(
            "{threads} threads, with {THREADS_RESERVE} kept for the rest of the process"
        ),
        fix: format!(
            "Use at most {} threads; macOS does not let a process raise this limit. The \
             event loops of stages 1 to 4 need no thread per task.",
            cap.saturating_sub(THREADS_RESERVE)
        ),
    })
}

/// Only macOS has a per-process thread cap to read up front; Linux's limits are checked
/// through the mapping budget, and `Builder::spawn`'s error covers the rest.
#[cfg(not(target_vendor = "apple"))]
fn check_thread_cap(_threads: u64) -> Result<(), Error> {
    Ok(())
}

/// The error for an OS that refused a thread after `started` of `wanted` were running.
pub(crate) fn refused(wanted: u64, started: u64, error: io::Error) -> Error {
    let which = match error.raw_os_error() {
        Some(libc::EAGAIN) => {
            "the thread limit (RLIMIT_NPROC, kernel.threads-max, or the cgroup's pids.max)"
        }
        Some(libc::ENOMEM) => "memory for thread stacks (vm.max_map_count or RAM)",
        _ => "an OS limit on threads",
    };
    Error::Limit {
        limit: which.to_string(),
        asked: format!(
            "the OS refused thread {} of {wanted} ({error}); the {started} started \
             threads were allowed to finish",
            started + 1
        ),
        fix: "Ask for fewer threads, or use an event loop (stages 1 to 4).".to_string(),
    }
}
