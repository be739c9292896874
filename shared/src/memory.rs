//! How much memory this process holds, for the "bytes per task" figures.
//!
//! Heap counters miss what matters here (coroutine stacks are mappings, not heap), so we
//! ask the kernel for the resident set size. Sample it while the tasks are alive (for
//! example from inside the last task to start, or between two polls of the loop) and
//! subtract a baseline taken before they were created.
//!
//! NB: we do not offer the kernel's peak (`VmHWM`): after a reset through
//! `/proc/self/clear_refs` it is not updated when memory is unmapped, and was seen here
//! reading lower than a resident size measured moments before. A figure we print must
//! not be able to lie.

/// Resident memory now, in bytes: `VmRSS` on Linux, the task's `resident_size` on macOS;
/// `None` where the OS does not tell (callers print "not measured on this OS").
#[cfg(target_os = "linux")]
pub fn resident_bytes() -> Option<u64> {
    kib_field(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmRSS:",
    )
}

/// The kernel memory holding this process's page tables (`VmPTE`), in bytes; `None`
/// where the OS does not tell.
pub fn page_table_bytes() -> Option<u64> {
    if cfg!(target_os = "linux") {
        kib_field(
            &std::fs::read_to_string("/proc/self/status").ok()?,
            "VmPTE:",
        )
    } else {
        None
    }
}

/// The figure of a `KEY   1234 kB` line in a Linux memory report (`/proc/PID/status`,
/// `/proc/PID/smaps_rollup`), in bytes.
pub fn kib_field(report: &str, key: &str) -> Option<u64> {
    let line = report.lines().find(|line| line.starts_with(key))?;
    let kib: u64 = line[key.len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Resident memory now, in bytes: `VmRSS` on Linux, the task's `resident_size` on macOS;
/// `None` where the OS does not tell (callers print "not measured on this OS").
#[cfg(target_vendor = "apple")]
pub fn resident_bytes() -> Option<u64> {
    let mut info = std::mem::MaybeUninit::<libc::mach_task_basic_info>::zeroed();
    let mut count = libc::MACH_TASK_BASIC_INFO_COUNT;
    // NB: libc deprecates `mach_task_self` in favour of the `mach2` crate; one call does
    // not justify a dependency.
    #[allow(deprecated)]
    // SAFETY: `info` is a writable `mach_task_basic_info` and `count` its size in
    // `natural_t` words, as `task_info` expects for `MACH_TASK_BASIC_INFO`; the call
    // only reads this task's counters.
    let status = unsafe {
        libc::task_info(
            libc::mach_task_self(),
            libc::MACH_TASK_BASIC_INFO,
            info.as_mut_ptr().cast(),
            &mut count,
        )
    };
    if status != libc::KERN_SUCCESS {
        return None;
    }
    // SAFETY: `task_info` succeeded, so it filled the struct.
    Some(unsafe { info.assume_init() }.resident_size)
}

/// Resident memory now, in bytes: `VmRSS` on Linux, the task's `resident_size` on macOS;
/// `None` where the OS does not tell (callers print "not measured on this OS").
#[cfg(not(any(target_os = "linux", target_vendor = "apple")))]
pub fn resident_bytes() -> Option<u64> {
    None
}

#[cfg(all(test, any(target_os = "linux", target_vendor = "apple")))]
mod tests {
    use super::*;

    #[test]
    fn a_kib_field_is_read_in_bytes_and_nothing_else_is() {
        let report = "Name:\tcat\nVmPTE:\t      52 kB\nPss:  1234 kB\nThreads:\t1\n";
        assert_eq!(kib_field(report, "VmPTE:"), Some(52 * 1024));
        assert_eq!(kib_field(report, "Pss:"), Some(1234 * 1024));
        assert_eq!(kib_field(report, "VmRSS:"), None, "absent");
        assert_eq!(kib_field(report, "Threads:"), None, "not in kB");
    }

    #[test]
    fn touched_memory_is_resident() {
        let before = resident_bytes().unwrap();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let during = resident_bytes().unwrap();
        assert!(during >= before + (60 << 20), "{before} -> {during}");
    }
}
