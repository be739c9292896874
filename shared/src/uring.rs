//! Setting up io_uring the one way every stage that uses it does (stage 1's `echo_uring`,
//! stage 4's `--driver uring`): build the ring, check up front that the kernel has every
//! operation the stage will submit, and where it cannot have them, say why and what to
//! run instead. Linux only.
//!
//! A refusal can be simulated, to see it on a machine where io_uring works: from code
//! with [`simulate_setup_error`], or for a whole process with the stage's environment
//! variable (`STAGE1_URING_SIMULATE=EPERM`, or `ENOSYS`).
//!
//! ```no_run
//! use io_uring::{IoUring, opcode};
//! use shared::uring::UringSetup;
//!
//! const SETUP: UringSetup = UringSetup {
//!     who: "echo_uring",
//!     needs: &[("recv", opcode::Recv::CODE), ("send", opcode::Send::CODE)],
//!     instead: "`--example echo_epoll` is the same server on epoll",
//!     simulate_var: "STAGE1_URING_SIMULATE",
//!     simulate_fn: "simulate_setup_error",
//! };
//! let ring = SETUP.ring(|| IoUring::new(256))?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::cell::Cell;
use std::io;

use io_uring::{IoUring, Probe};

use crate::io_uring_refusal;

/// What a stage needs of io_uring, and what it tells the reader when it cannot have it.
#[derive(Debug, Clone, Copy)]
pub struct UringSetup {
    /// Who needs the ring, as the messages name it: `"echo_uring"`, `"the uring driver"`.
    pub who: &'static str,
    /// Every operation it submits, by name and opcode (`opcode::Recv::CODE`): a kernel
    /// that lacks one is refused before the first request, not at the first submission.
    pub needs: &'static [(&'static str, u8)],
    /// What to run instead, the end of every refusal: `"Use --driver mio (the default)"`.
    pub instead: &'static str,
    /// The environment variable that simulates a refusal: `"STAGE4_URING_SIMULATE"`.
    pub simulate_var: &'static str,
    /// How code simulates one, as a simulated refusal names it (the stage's path to
    /// [`simulate_setup_error`]): `"uring::simulate_setup_error"`.
    pub simulate_fn: &'static str,
}

impl UringSetup {
    /// Sets up a ring with `build` (or fails as simulated), then checks that the kernel
    /// has every operation in [`UringSetup::needs`]. The error says why io_uring is
    /// unusable here and ends with [`UringSetup::instead`].
    pub fn ring(&self, build: impl FnOnce() -> io::Result<IoUring>) -> io::Result<IoUring> {
        let simulated = self.simulated();
        let ring = match simulated {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => build(),
        }
        .map_err(|error| self.refusal(&error, simulated.is_some()))?;
        self.probe(&ring)?;
        Ok(ring)
    }

    /// The `errno` to fail the setup with, if a refusal is simulated: this thread's
    /// ([`simulate_setup_error`]) first, then the environment's.
    pub fn simulated(&self) -> Option<i32> {
        SIMULATED
            .get()
            .or_else(|| match std::env::var(self.simulate_var).ok()?.as_str() {
                "ENOSYS" => Some(libc::ENOSYS),
                "EPERM" => Some(libc::EPERM),
                _ => None,
            })
    }

    /// Why `io_uring_setup` failed (see [`io_uring_refusal`]), what to run instead, and
    /// whether the failure was simulated.
    pub fn refusal(&self, error: &io::Error, simulated: bool) -> io::Error {
        let why = io_uring_refusal(error);
        let simulated = if simulated {
            format!(
                " [simulated: {} or {}]",
                self.simulate_var, self.simulate_fn
            )
        } else {
            String::new()
        };
        io::Error::new(error.kind(), format!("{why}. {}{simulated}", self.instead))
    }

    /// Checks that `ring`'s kernel has every operation in [`UringSetup::needs`].
    pub fn probe(&self, ring: &IoUring) -> io::Result<()> {
        let mut probe = Probe::new();
        let missing = match ring.submitter().register_probe(&mut probe) {
            Ok(()) => self
                .needs
                .iter()
                .find(|(_, code)| !probe.is_supported(*code)),
            // The probe itself came with Linux 5.6, as did everything the stages submit.
            Err(_) => self.needs.first(),
        };
        match missing {
            None => Ok(()),
            Some((name, _)) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "io_uring on this kernel lacks the {name} operation ({} needs Linux 5.6 \
                     or later). {}",
                    self.who, self.instead
                ),
            )),
        }
    }
}

// ANCHOR: simulate
thread_local! {
    static SIMULATED: Cell<Option<i32>> = const { Cell::new(None) };
}

/// Makes the next rings set up on this thread fail as if `io_uring_setup` had returned
/// `errno` (`libc::ENOSYS`: a kernel without io_uring; `libc::EPERM`: io_uring
/// disabled), to test the refusal on a machine where io_uring works. `None` stops it.
pub fn simulate_setup_error(errno: Option<i32>) {
    SIMULATED.set(errno);
}
// ANCHOR_END: simulate

/// Whether the running kernel's version is at least `major.minor` (from `uname`): for
/// what no probe or feature flag tells (a multishot accept or receive, a wait in the ring).
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: `utsname` is plain data, for which all zeros is a valid value.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, writable utsname.
    if unsafe { libc::uname(&mut name) } != 0 {
        return false;
    }
    // SAFETY: uname wrote a NUL-terminated string into `release`.
    let release = unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) };
    let mut numbers = release
        .to_str()
        .unwrap_or("")
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let found = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    found >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::opcode;

    const SETUP: UringSetup = UringSetup {
        who: "this test",
        needs: &[("recv", opcode::Recv::CODE), ("send", opcode::Send::CODE)],
        instead: "Run something else",
        simulate_var: "SHARED_TEST_URING_SIMULATE",
        simulate_fn: "simulate_setup_error",
    };

    #[test]
    fn a_simulated_refusal_says_why_what_instead_and_that_it_is_simulated() {
        for (errno, why) in [(libc::EPERM, "(EPERM)"), (libc::ENOSYS, "(ENOSYS")] {
            simulate_setup_error(Some(errno));
            let Err(error) = SETUP.ring(|| panic!("a simulated refusal builds no ring")) else {
                panic!("a simulated refusal is an error");
            };
            let text = error.to_string();
            assert!(text.contains(why), "{text}");
            assert!(
                text.ends_with(
                    ". Run something else [simulated: SHARED_TEST_URING_SIMULATE or \
                     simulate_setup_error]"
                ),
                "{text}"
            );
            assert_eq!(error.raw_os_error(), None, "the message, not a bare errno");
        }
        simulate_setup_error(None);
        assert_eq!(SETUP.simulated(), None);
    }

    #[test]
    fn a_real_refusal_is_not_called_simulated() {
        let error = SETUP.refusal(&io::Error::from_raw_os_error(libc::ENOSYS), false);
        let text = error.to_string();
        assert!(
            text.starts_with("this kernel has no io_uring (ENOSYS"),
            "{text}"
        );
        assert!(text.ends_with(". Run something else"), "{text}");
    }

    #[test]
    fn the_probe_names_the_first_operation_the_kernel_lacks() {
        let Ok(ring) = IoUring::new(8) else {
            eprintln!("skipped: no io_uring here to probe");
            return;
        };
        SETUP.probe(&ring).unwrap();
        // An opcode no kernel has (the probe covers 256; none is near the last).
        let unknown = UringSetup {
            needs: &[("recv", opcode::Recv::CODE), ("imaginary", u8::MAX)],
            ..SETUP
        };
        let text = unknown.probe(&ring).unwrap_err().to_string();
        assert_eq!(
            text,
            "io_uring on this kernel lacks the imaginary operation (this test needs Linux \
             5.6 or later). Run something else"
        );
    }
}
