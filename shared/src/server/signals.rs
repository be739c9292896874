//! SIGINT and SIGTERM for a standalone server: the first asks politely, a second one
//! ends the process at once. nginx's graceful quit and hyper's `graceful_shutdown` work
//! this way, and so does Ctrl-C pressed twice in most servers people trust.
//!
//! A signal handler may do almost nothing: no locks, no allocation, no `println!`, only
//! async-signal-safe calls such as `write(2)`. So the handler writes the signal's number
//! into a socket pair (the "self-pipe trick"), and a thread of ours that blocks reading
//! the other end runs the real work. The `signal-hook` crate packages the same trick;
//! for two signals and one byte, thirty lines of `libc` are enough.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread;

/// The write end of the pipe the handler writes to; -1 until installed.
static PIPE: AtomicI32 = AtomicI32::new(-1);
/// A first signal has arrived.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// `"SIGINT"`, `"SIGTERM"`, or the number.
pub fn name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}

/// Installs handlers for SIGINT and SIGTERM. The first of them to arrive calls `first`
/// with its number, on a thread of its own; any later one ends the process at once, by
/// the signal's default action (so the shell sees "killed by SIGINT", status 130).
///
/// Once per process: a second call fails.
pub fn on_first_signal(first: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    let (mut reader, writer) = UnixStream::pair()?;
    // The handler must never block; one byte in an empty socket buffer never does.
    writer.set_nonblocking(true)?;
    let fd = writer.as_raw_fd();
    if PIPE
        .compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err(io::Error::other("signal handlers are already installed"));
    }
    // The handler may write to it until the process ends: never close it.
    let _ = writer.into_raw_fd();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            loop {
                match reader.read(&mut byte) {
                    Ok(1) => return first(i32::from(byte[0])),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    _ => return, // the write end cannot close; nothing else can happen
                }
            }
        })?;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        install(signal)?;
    }
    Ok(())
}

fn install(signal: i32) -> io::Result<()> {
    // SAFETY: an all-zero `sigaction` is a valid value (no flags, empty mask, no handler)
    // that we fill in before use.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handle as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SA_RESTART: a blocking call interrupted by the signal resumes instead of failing
    // with EINTR in code that does not expect it.
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action` is initialised; `handle` only makes async-signal-safe calls.
    if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

extern "C" fn handle(signal: libc::c_int) {
    if SIGNALLED.swap(true, Ordering::SeqCst) {
        const MESSAGE: &[u8] = b"second signal: stopping at once\n";
        // SAFETY: `write`, `signal` and `raise` are async-signal-safe; MESSAGE is a
        // valid buffer of its length. Back to the default action, the re-raised signal
        // ends the process.
        unsafe {
            libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
        return;
    }
    let byte = signal as u8;
    // The handler interrupts arbitrary code: leave errno as it found it.
    let saved = errno();
    // SAFETY: `write` is async-signal-safe; PIPE is the write end of the socket pair,
    // open for the rest of the process; `byte` is one valid byte.
    unsafe { libc::write(PIPE.load(Ordering::SeqCst), (&raw const byte).cast(), 1) };
    set_errno(saved);
}

#[cfg(target_os = "linux")]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno slot; no preconditions.
    unsafe { libc::__errno_location() }
}

#[cfg(target_vendor = "apple")]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno slot; no preconditions.
    unsafe { libc::__error() }
}

fn errno() -> libc::c_int {
    // SAFETY: the slot is valid for the calling thread's life.
    unsafe { *errno_location() }
}

fn set_errno(value: libc::c_int) {
    // SAFETY: the slot is valid for the calling thread's life.
    unsafe { *errno_location() = value }
}
