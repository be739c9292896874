//! The server's system calls, counted by `perf stat` on its pid (Linux).
//!
//! One tracepoint counts every system call (`raw_syscalls:sys_enter`), and one per call
//! a server makes counts that call (`syscalls:sys_enter_recvfrom`, ...). perf starts with
//! its counters off (`--delay -1`) and the harness turns them on and off around the
//! measured window through a control FIFO (`--control fifo:CTL,ACK`), so the connections'
//! setup and the warm-up are not counted.
//!
//! The counters go on before the load generator's window opens and off after it closes,
//! with the load running all along (see [`super::harness`]), so the count covers the
//! window's requests and a pipe's latency more: a slight overcount, never an undercount.
//!
//! A tracepoint costs a little on every call it counts, so the counted runs are extra
//! runs, not the timed ones.

use std::time::Duration;

use shared::Error;

/// The calls counted one by one (those that exist on this kernel).
const NAMED: [&str; 22] = [
    "read",
    "write",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "readv",
    "writev",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "io_uring_enter",
    "accept",
    "accept4",
    "futex",
    "close",
    "poll",
    "ppoll",
    "sched_yield",
    "mmap",
    "munmap",
];

/// System calls over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Syscalls {
    /// Every system call.
    pub total: u64,
    /// The named ones that were made, most first; the rest of `total` is other calls.
    pub by_name: Vec<(String, u64)>,
}

/// Why perf cannot count here, if it cannot: not installed, not allowed, not Linux.
pub fn unavailable() -> Option<String> {
    imp::unavailable()
}

pub use imp::Perf;

#[cfg(target_os = "linux")]
mod imp {
    use std::fs::{File, OpenOptions};
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use super::*;

    const TRACEFS: [&str; 2] = [
        "/sys/kernel/tracing/events/syscalls",
        "/sys/kernel/debug/tracing/events/syscalls",
    ];

    /// The events to count: the total, and each named call this kernel has.
    fn events() -> Vec<String> {
        let mut events = vec!["raw_syscalls:sys_enter".to_string()];
        if let Some(dir) = TRACEFS.iter().find(|d| std::path::Path::new(d).is_dir()) {
            events.extend(
                NAMED
                    .iter()
                    .filter(|name| {
                        std::path::Path::new(&format!("{dir}/sys_enter_{name}")).exists()
                    })
                    .map(|name| format!("syscalls:sys_enter_{name}")),
            );
        }
        events
    }

    pub(super) fn unavailable() -> Option<String> {
        let output = Command::new("perf")
            .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"])
            .stdout(Stdio::null())
            .output();
        match output {
            Err(error) => Some(format!("perf: {error}")),
            Ok(out) if out.status.success() => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let counted = stderr.lines().any(|line| {
                    line.contains("raw_syscalls:sys_enter")
                        && line
                            .split(',')
                            .next()
                            .is_some_and(|n| n.parse::<u64>().is_ok())
                });
                (!counted).then(|| format!("perf counted nothing: {}", stderr.trim()))
            }
            Ok(out) => Some(format!(
                "perf stat refused ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }

    /// `perf stat` attached to one process, its counters off until [`Perf::enable`].
    #[derive(Debug)]
    pub struct Perf {
        child: Child,
        ctl: File,
        ack: File,
        dir: PathBuf,
    }

    fn fifo(path: &std::path::Path) -> Result<(), Error> {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::Other(format!("{}: a NUL in the path", path.display())))?;
        // SAFETY: `c` is a NUL-terminated path; mkfifo only reads it.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            return Err(Error::io(
                format!("mkfifo {}", path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    impl Perf {
        /// Starts perf on process `pid`, counters off.
        pub fn attach(pid: u32) -> Result<Perf, Error> {
            let dir = std::env::temp_dir().join(format!("net-perf-{}-{pid}", std::process::id()));
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            let (ctl_path, ack_path) = (dir.join("ctl"), dir.join("ack"));
            fifo(&ctl_path)?;
            fifo(&ack_path)?;
            // NB: opened read-write, so that neither open waits for perf to open its end
            // (Linux allows it for a FIFO); the ack end is non-blocking, read with poll.
            let open = |path: &PathBuf, flags| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(flags)
                    .open(path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))
            };
            let ctl = open(&ctl_path, 0)?;
            let ack = open(&ack_path, libc::O_NONBLOCK)?;
            let child = Command::new("perf")
                .args(["stat", "-x,", "--delay", "-1", "-p", &pid.to_string()])
                .arg(format!(
                    "--control=fifo:{},{}",
                    ctl_path.display(),
                    ack_path.display()
                ))
                .args(["-o", &dir.join("counts").display().to_string()])
                .args(["-e", &events().join(",")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| Error::io("starting perf", e))?;
            Ok(Perf {
                child,
                ctl,
                ack,
                dir,
            })
        }

        /// Sends `command` and waits for perf's answer.
        fn command(&mut self, command: &str) -> Result<(), Error> {
            writeln!(self.ctl, "{command}").map_err(|e| Error::io("talking to perf", e))?;
            // perf answers `ack\n` (and a NUL: it writes the C string whole); it takes a
            // moment to attach first.
            let mut answer = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !answer.windows(4).any(|w| w == b"ack\n") {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Other(format!(
                        "perf did not acknowledge `{command}`"
                    )));
                }
                let mut poll = libc::pollfd {
                    fd: self.ack.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, for the duration of the call.
                unsafe { libc::poll(&mut poll, 1, left.as_millis().min(1000) as i32) };
                let mut buf = [0u8; 64];
                if let Ok(n) = self.ack.read(&mut buf) {
                    answer.extend_from_slice(&buf[..n]);
                }
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(Error::Other(format!("perf ended early ({status})")));
                }
            }
            Ok(())
        }

        /// Turns the counters on.
        pub fn enable(&mut self) -> Result<(), Error> {
            self.command("enable")
        }

        /// Turns the counters off.
        pub fn disable(&mut self) -> Result<(), Error> {
            self.command("disable")
        }

        /// Stops perf and reads its counts.
        pub fn finish(mut self) -> Result<Syscalls, Error> {
            // SAFETY: kill only sends a signal, to our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            let _ = self.child.wait();
            let path = self.dir.join("counts");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            parse(&text)
        }
    }

    impl Drop for Perf {
        fn drop(&mut self) {
            if matches!(self.child.try_wait(), Ok(None)) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub(super) fn unavailable() -> Option<String> {
        Some("perf is Linux-only".into())
    }

    /// `perf stat`: not on this OS.
    #[derive(Debug)]
    pub struct Perf(());

    impl Perf {
        /// Not on this OS.
        pub fn attach(_pid: u32) -> Result<Perf, Error> {
            Err(Error::Other(unavailable().unwrap_or_default()))
        }

        /// Not on this OS.
        pub fn enable(&mut self) -> Result<(), Error> {
            Ok(())
        }

        /// Not on this OS.
        pub fn disable(&mut self) -> Result<(), Error> {
            Ok(())
        }

        /// Not on this OS.
        pub fn finish(self) -> Result<Syscalls, Error> {
            Ok(Syscalls::default())
        }
    }
}

/// The counts in perf's `-x,` output: `COUNT,,EVENT,...` lines.
pub fn parse(text: &str) -> Result<Syscalls, Error> {
    let mut syscalls = Syscalls::default();
    let mut total = None;
    for line in text.lines() {
        let mut fields = line.split(',');
        let (Some(count), Some(_unit), Some(event)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue; // `<not counted>`: never enabled, or the comment lines
        };
        if event == "raw_syscalls:sys_enter" {
            total = Some(count);
        } else if let Some(name) = event.strip_prefix("syscalls:sys_enter_")
            && count > 0
        {
            syscalls.by_name.push((name.to_string(), count));
        }
    }
    syscalls.total = total
        .ok_or_else(|| Error::Other(format!("perf's output has no system-call total:\n{text}")))?;
    syscalls
        .by_name
        .sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    Ok(syscalls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_output_becomes_counts_most_first() {
        let text = "# started on Mon\n\n\
            3000,,raw_syscalls:sys_enter,1000,100.00,,\n\
            1000,,syscalls:sys_enter_sendto,1000,100.00,,\n\
            1990,,syscalls:sys_enter_recvfrom,1000,100.00,,\n\
            0,,syscalls:sys_enter_close,1000,100.00,,\n\
            <not counted>,,syscalls:sys_enter_futex,0,100.00,,Events disabled\n";
        let counts = parse(text).unwrap();
        assert_eq!(counts.total, 3000);
        assert_eq!(
            counts.by_name,
            [("recvfrom".to_string(), 1990), ("sendto".to_string(), 1000)]
        );
        assert!(parse("# nothing\n").is_err());
    }
}
