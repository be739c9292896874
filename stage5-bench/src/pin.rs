//! Pinning the calling thread to one CPU, so that the two sides of a measurement (two
//! threads ping-ponging, a server and its load generator) run where we say.
//!
//! Linux has `sched_setaffinity`. macOS has no way to pin a thread to a CPU (only
//! affinity hints), and the other systems are not measured here: there [`allowed_cpus`]
//! is empty and [`to`] says it cannot, so a caller can print that the sides may share a
//! core.

use std::io;

/// The CPUs this process may run on, lowest first; empty where pinning is not available.
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set for the kernel to fill.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of the size we pass.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    // SAFETY: CPU_ISSET only reads inside the set.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// The CPUs this process may run on: none known on this OS.
#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// The lowest CPU this process may run on.
pub fn first_allowed_cpu() -> Option<usize> {
    allowed_cpus().first().copied()
}

/// Pins the calling thread to `cpu`. Threads it starts afterwards inherit the pin: called
/// first thing in `main`, it pins the whole process.
#[cfg(target_os = "linux")]
pub fn to(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is past the largest CPU set"),
        ));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET writes inside it (`cpu` is
    // below CPU_SETSIZE), and sched_setaffinity only reads the set we pass with its size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to `cpu`: not on this OS.
#[cfg(not(target_os = "linux"))]
pub fn to(cpu: usize) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("cannot pin to CPU {cpu}: this OS has no CPU affinity"),
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pinned_to_an_allowed_cpu_runs_only_there() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty(), "a Linux process may run somewhere");
        let last = *cpus.last().unwrap();
        std::thread::spawn(move || {
            to(last).unwrap();
            assert_eq!(allowed_cpus(), [last]);
            // SAFETY: sched_getcpu has no preconditions.
            assert_eq!(unsafe { libc::sched_getcpu() }, last as i32);
        })
        .join()
        .unwrap();
        assert!(to(libc::CPU_SETSIZE as usize).is_err());
    }
}
