//! An echo server on `select(2)`, straight on libc: readiness as the 1980s knew it.
//!
//! Over stage 0's thread per client, one thread watches every client: each time round, it
//! lists all the descriptors it cares about in `fd_set` bitmaps, `select` blocks until at
//! least one is ready and overwrites the bitmaps with the ready ones, and the loop then
//! checks every descriptor again. Both the kernel and the loop pay for every watched
//! descriptor on every call, and no descriptor may be `FD_SETSIZE` (1024) or above.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_select`.

use std::collections::BTreeMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{AcceptPause, Connection, STOP_CHECK_MS};

// ANCHOR: fd_set
/// A safe face on `libc::fd_set`: a bitmap of descriptors `0..FD_SETSIZE`.
struct FdSet(libc::fd_set);

impl FdSet {
    fn new() -> FdSet {
        let mut set = MaybeUninit::<libc::fd_set>::uninit();
        // SAFETY: FD_ZERO initialises the whole set it is given, and `set` is valid for
        // writes; after it the set is initialised.
        unsafe {
            libc::FD_ZERO(set.as_mut_ptr());
            FdSet(set.assume_init())
        }
    }

    /// Adds `fd`; `false` if it cannot be represented (`fd >= FD_SETSIZE`).
    fn insert(&mut self, fd: RawFd) -> bool {
        if !fits(fd) {
            return false;
        }
        // SAFETY: `fd` is in `0..FD_SETSIZE` (checked above), so the bit is inside the set.
        unsafe { libc::FD_SET(fd, &mut self.0) };
        true
    }

    fn contains(&self, fd: RawFd) -> bool {
        // SAFETY: as in `insert`, FD_ISSET only reads the bit of an in-range `fd`.
        fits(fd) && unsafe { libc::FD_ISSET(fd, &self.0) }
    }
}

/// Whether `select` can watch `fd` at all.
fn fits(fd: RawFd) -> bool {
    usize::try_from(fd).is_ok_and(|fd| fd < libc::FD_SETSIZE)
}
// ANCHOR_END: fd_set

// ANCHOR: serve
/// Echoes every client of `listener` until `stop` is set (checked every 100 ms).
///
/// Clients whose descriptor is `FD_SETSIZE` or more are turned away with a message on
/// stderr: `select` cannot watch them. Returns an error only if `select` itself fails.
pub fn serve(listener: TcpListener, stop: &AtomicBool) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listen_fd = listener.as_raw_fd();
    if !fits(listen_fd) {
        return Err(io::Error::other(format!(
            "the listening socket is descriptor {listen_fd}, over select's FD_SETSIZE ({})",
            libc::FD_SETSIZE
        )));
    }
    let mut clients: BTreeMap<RawFd, Connection> = BTreeMap::new();
    let mut accept = AcceptPause::default();

    while !stop.load(Ordering::Relaxed) {
        // Every time round, tell the kernel everything we are waiting for.
        let mut readable = FdSet::new();
        let mut writable = FdSet::new();
        let accepting = accept.is_over();
        if accepting {
            readable.insert(listen_fd);
        }
        let mut max_fd = listen_fd;
        for (&fd, client) in &clients {
            if client.wants_write() {
                writable.insert(fd);
            } else {
                readable.insert(fd);
            }
            max_fd = max_fd.max(fd);
        }
        let mut timeout = libc::timeval {
            tv_sec: 0,
            // suseconds_t is i64 on Linux, i32 on macOS.
            tv_usec: (STOP_CHECK_MS * 1000) as libc::suseconds_t,
        };
        // SAFETY: both sets are initialised `fd_set`s and `timeout` a valid `timeval`,
        // all alive for the call; `max_fd + 1` bounds the descriptors in them.
        let ready = unsafe {
            libc::select(
                max_fd + 1,
                &mut readable.0,
                &mut writable.0,
                std::ptr::null_mut(),
                &mut timeout,
            )
        };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue; // a signal: nothing is ready, ask again
            }
            return Err(error);
        }
        // The sets now hold only the ready descriptors: check every client against them.
        clients.retain(|&fd, client| {
            if writable.contains(fd) {
                client.on_writable()
            } else if readable.contains(fd) {
                client.on_readable()
            } else {
                true
            }
        });
        if accepting
            && readable.contains(listen_fd)
            && let Err(e) = accept_all(&listener, &mut clients)
        {
            accept.start("echo_select", &e);
        }
    }
    Ok(())
}
// ANCHOR_END: serve

/// Accepts every pending client (until `WouldBlock`). `Err` when out of descriptors.
fn accept_all(listener: &TcpListener, clients: &mut BTreeMap<RawFd, Connection>) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let fd = stream.as_raw_fd();
                if !fits(fd) {
                    // Dropping the stream closes it: the client sees the connection end.
                    eprintln!(
                        "echo_select: turning {peer} away: its descriptor {fd} is over \
                         select's FD_SETSIZE ({}); epoll and kqueue have no such limit",
                        libc::FD_SETSIZE
                    );
                    continue;
                }
                match Connection::new(stream) {
                    Ok(client) => {
                        clients.insert(fd, client);
                    }
                    Err(e) => eprintln!("echo_select: dropping {peer}: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if shared::is_fd_exhaustion(&e) => return Err(e),
            // Other errors concern one client (e.g. it reset before we accepted).
            Err(e) => eprintln!("echo_select: accept failed: {e}"),
        }
    }
}
