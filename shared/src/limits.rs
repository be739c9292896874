//! How many connections and threads this process may have, checked before any work
//! starts.
//!
//! A million-task demo that dies half way with "Too many open files" teaches nothing. So
//! every stage asks first: [`check_connections`] raises the soft `RLIMIT_NOFILE` to the
//! hard limit (the soft limit is often 1024 while the hard one is far higher) and refuses
//! with an [`Error::Limit`] that names the limit, the number asked for and the fix.

use std::io;

use crate::Error;

/// File descriptors kept free for everything that is not a connection: stdio, the epoll
/// instance, the listener, the waker, files the allocator or test harness opens.
pub const FD_RESERVE: u64 = 64;

/// The soft and hard `RLIMIT_NOFILE` of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The limit in force: opening one more descriptor fails with `EMFILE`.
    pub soft: u64,
    /// How far an unprivileged process may raise `soft`.
    pub hard: u64,
}

/// The current `RLIMIT_NOFILE`.
#[allow(
    clippy::unnecessary_cast,
    reason = "rlim_t is u64 on Linux, not everywhere"
)]
pub fn fd_limit() -> io::Result<FdLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FdLimit {
        soft: limit.rlim_cur as u64,
        hard: limit.rlim_max as u64,
    })
}

/// Raises the soft `RLIMIT_NOFILE` as far as it may go ([`fd_ceiling`]) and returns the
/// new limits.
pub fn raise_fd_limit() -> io::Result<FdLimit> {
    let current = fd_limit()?;
    let target = fd_ceiling(current);
    if current.soft >= target {
        return Ok(current);
    }
    let raised = libc::rlimit {
        rlim_cur: target as libc::rlim_t,
        rlim_max: current.hard as libc::rlim_t,
    };
    // SAFETY: `raised` is a valid `rlimit`; raising the soft limit up to the hard one is
    // allowed for any process and changes nothing but this limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Ok(current);
    }
    fd_limit()
}

/// How far the soft limit may be raised: the hard limit on Linux.
///
/// macOS reports an "unlimited" hard limit (with a soft one of 256) but refuses a soft
/// limit above `kern.maxfilesperproc`, as its setrlimit(2) says: the ceiling there is the
/// smaller of the two (`OPEN_MAX`, 10,240, if the sysctl cannot be read).
pub fn fd_ceiling(limit: FdLimit) -> u64 {
    #[cfg(target_vendor = "apple")]
    {
        const OPEN_MAX: u64 = 10_240; // <sys/syslimits.h>
        let per_process = sysctl_int(c"kern.maxfilesperproc").unwrap_or(OPEN_MAX);
        limit.hard.min(per_process)
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        limit.hard
    }
}

/// A numeric sysctl by name (`kern.maxfilesperproc`, `kern.num_taskthreads`), or `None`.
#[cfg(target_vendor = "apple")]
pub fn sysctl_int(name: &std::ffi::CStr) -> Option<u64> {
    let mut value = [0u8; 8];
    let mut len = value.len();
    // SAFETY: `name` is NUL-terminated; `value` is a writable buffer of `len` bytes, and
    // the kernel writes at most `len` bytes and stores how many in `len`.
    let status = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    match (status, len) {
        (0, 4) => u64::try_from(i32::from_ne_bytes(value[..4].try_into().ok()?)).ok(),
        (0, 8) => u64::try_from(i64::from_ne_bytes(value)).ok(),
        _ => None,
    }
}

/// Descriptors this process has open now, where the OS tells us (`/proc/self/fd` on
/// Linux, `/dev/fd` on macOS); `None` elsewhere.
pub fn open_fds() -> Option<u64> {
    let entries = ["/proc/self/fd", "/dev/fd"]
        .into_iter()
        .find_map(|dir| std::fs::read_dir(dir).ok())?;
    // One of the entries is the directory handle read_dir itself holds open.
    Some((entries.count() as u64).saturating_sub(1))
}

/// Lets the kernel choose a bound socket's port at `connect` rather than at `bind`
/// (`IP_BIND_ADDRESS_NO_PORT`, Linux): a port then only has to be unique per
/// destination, so one source address is not limited to one port range in all.
#[cfg(target_os = "linux")]
pub fn bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd, and a pointer to a c_int with its size, as the option
    // expects; the kernel only reads it.
    let status = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the fd limit, then checks that `connections` more sockets fit in it, with
/// [`FD_RESERVE`] to spare.
///
/// Count every socket the process will hold at once: a client talking to the embedded
/// server holds both ends of each connection, so it asks for twice the requests.
pub fn check_connections(connections: u64) -> Result<FdLimit, Error> {
    let limit = raise_fd_limit().map_err(|e| Error::io("reading RLIMIT_NOFILE", e))?;
    let open = open_fds().unwrap_or(0);
    let needed = connections.saturating_add(open + FD_RESERVE);
    if needed <= limit.soft {
        return Ok(limit);
    }
    let fix = if needed <= fd_ceiling(limit) {
        format!("Raise the soft limit with `ulimit -n {needed}`")
    } else if cfg!(target_vendor = "apple") {
        format!(
            "Raise the per-process cap (`sudo sysctl -w kern.maxfilesperproc={needed}`, \
             and `kern.maxfiles` if it is lower), then `ulimit -n {needed}`"
        )
    } else {
        format!(
            "Raise the hard limit (as root: `ulimit -Hn {needed}`, or `nofile` in \
             /etc/security/limits.conf), then `ulimit -n {needed}`"
        )
    };
    Err(Error::Limit {
        limit: format!(
            "open-file limit (RLIMIT_NOFILE: soft {}, hard {})",
            limit.soft, limit.hard
        ),
        asked: format!(
            "{connections} concurrent sockets need about {needed} file descriptors \
             ({open} already open, {FD_RESERVE} kept in reserve)"
        ),
        fix: format!("{fix}, or ask for fewer concurrent requests."),
    })
}

/// How many memory mappings this process may still create (Linux only).
///
/// Every thread stack, guard page and coroutine stack with its own guard is a mapping,
/// and the kernel caps them per process at `vm.max_map_count` (65,530 by default).
/// Crossing the cap does not fail cleanly everywhere: Rust's runtime aborts the process
/// when a new thread cannot map its signal stack. So count first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapBudget {
    /// `vm.max_map_count`.
    pub max: u64,
    /// Mappings this process has now (lines of `/proc/self/maps`).
    pub used: u64,
}

impl MapBudget {
    /// Reads the budget, or `None` where the OS does not expose it.
    pub fn read() -> Option<MapBudget> {
        let max = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?;
        let maps = std::fs::read("/proc/self/maps").ok()?;
        Some(MapBudget {
            max: max.trim().parse().ok()?,
            used: maps.iter().filter(|&&b| b == b'\n').count() as u64,
        })
    }

    /// Mappings still free.
    pub fn free(&self) -> u64 {
        self.max.saturating_sub(self.used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers() {
        let before = fd_limit().unwrap();
        let after = raise_fd_limit().unwrap();
        assert!(after.soft >= before.soft);
        assert_eq!(after.hard, before.hard);
        // Up to the ceiling: the hard limit on Linux, kern.maxfilesperproc on macOS.
        assert_eq!(after.soft, fd_ceiling(after).max(before.soft));
    }

    #[test]
    fn a_small_number_of_connections_fits() {
        check_connections(100).unwrap();
    }

    #[test]
    fn too_many_connections_get_a_clear_error() {
        let hard = fd_ceiling(fd_limit().unwrap());
        let error = check_connections(hard).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, Error::Limit { .. }), "{error:?}");
        assert!(text.contains("RLIMIT_NOFILE"), "{text}");
        assert!(
            text.contains(&format!("{hard} concurrent sockets")),
            "{text}"
        );
        assert!(text.contains("ulimit"), "{text}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_map_budget_is_read() {
        let budget = MapBudget::read().unwrap();
        assert!(budget.max > 1000);
        assert!(budget.used > 10 && budget.used < budget.max);
    }
}
