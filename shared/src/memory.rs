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

/// Resident memory now (`VmRSS`), in bytes, or `None` where the OS does not tell.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line["VmRSS:".len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn touched_memory_is_resident() {
        let before = resident_bytes().unwrap();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let during = resident_bytes().unwrap();
        assert!(during >= before + (60 << 20), "{before} -> {during}");
    }
}
