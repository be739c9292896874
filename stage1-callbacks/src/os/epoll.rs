//! The same echo server on Linux's `epoll(7)`, straight on libc: what mio uses underneath.
//!
//! Over [`select`](super::select), the interest list lives in the kernel: each descriptor
//! is registered once (`epoll_ctl`), and `epoll_wait` returns only the ready ones, each
//! with the 64 bits of data we registered it with (here, its descriptor). A call costs
//! in proportion to what is ready, not to what is watched, and there is no `FD_SETSIZE`.
//! Linux only: macOS and the BSDs have kqueue for the same job.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_epoll`.

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{AcceptPause, Connection, STOP_CHECK_MS};

// ANCHOR: epoll
/// An epoll instance: the kernel's list of what we wait for. Closed when dropped.
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new
        // descriptor that nothing else owns, so OwnedFd may take it.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// `EPOLL_CTL_ADD`, `_MOD` or `_DEL` for `fd`, tagged with `fd` itself.
    fn control(&self, op: libc::c_int, fd: RawFd, events: libc::c_int) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: fd as u64,
        };
        // SAFETY: `event` is a valid `epoll_event` for the duration of the call (the
        // kernel copies it), and both descriptors are open.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` and fills `events` with the ready descriptors.
    fn wait(&self, events: &mut Vec<libc::epoll_event>, timeout_ms: i32) -> io::Result<()> {
        events.clear();
        let capacity = events.capacity().min(i32::MAX as usize) as i32;
        // SAFETY: the kernel writes at most `capacity` events into the vector's spare
        // capacity, which is that large; we then set the length to what it wrote.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                capacity,
                timeout_ms,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the first `n` (<= capacity) events were initialised by epoll_wait.
        unsafe { events.set_len(n as usize) };
        Ok(())
    }
}
// ANCHOR_END: epoll

// ANCHOR: serve
/// Echoes every client of `listener` until `stop` is set (checked every 100 ms).
///
/// Returns an error only if epoll itself fails.
pub fn serve(listener: TcpListener, stop: &AtomicBool) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listen_fd = listener.as_raw_fd();
    let epoll = Epoll::new()?;
    // NB: level-triggered (no EPOLLET), like select: a descriptor that is still ready is
    // reported again. mio asks for edge-triggered events, hence its drain-until-WouldBlock.
    epoll.control(libc::EPOLL_CTL_ADD, listen_fd, libc::EPOLLIN)?;
    let mut clients: HashMap<RawFd, Connection> = HashMap::new();
    let mut events = Vec::with_capacity(256);
    let mut accept = AcceptPause::default();

    while !stop.load(Ordering::Relaxed) {
        if accept.resume_now() {
            epoll.control(libc::EPOLL_CTL_MOD, listen_fd, libc::EPOLLIN)?;
        }
        match epoll.wait(&mut events, STOP_CHECK_MS) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // Only what is ready comes back, each tagged with the descriptor we registered.
        for event in &events {
            let fd = event.u64 as RawFd;
            if fd == listen_fd {
                if let Err(e) = accept_all(&listener, &epoll, &mut clients) {
                    // Level-triggered, the listener would be reported again at once.
                    accept.start("echo_epoll", &e);
                    epoll.control(libc::EPOLL_CTL_MOD, listen_fd, 0)?;
                }
                continue;
            }
            // A client closed in this batch may still have an event queued: skip it.
            let Some(client) = clients.get_mut(&fd) else {
                continue;
            };
            let was_writing = client.wants_write();
            let alive = if was_writing {
                client.on_writable()
            } else {
                client.on_readable()
            };
            if !alive {
                // Closing the descriptor also takes it out of the epoll set.
                clients.remove(&fd);
            } else if client.wants_write() != was_writing {
                // Switch between waiting to read and waiting to write.
                let interest = if was_writing {
                    libc::EPOLLIN
                } else {
                    libc::EPOLLOUT
                };
                if let Err(e) = epoll.control(libc::EPOLL_CTL_MOD, fd, interest) {
                    eprintln!("echo_epoll: dropping client {fd}: {e}");
                    clients.remove(&fd);
                }
            }
        }
    }
    Ok(())
}
// ANCHOR_END: serve

/// Accepts every pending client (until `WouldBlock`) and registers it for reading.
/// `Err` when out of descriptors.
fn accept_all(
    listener: &TcpListener,
    epoll: &Epoll,
    clients: &mut HashMap<RawFd, Connection>,
) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let fd = stream.as_raw_fd();
                let client = Connection::new(stream).and_then(|client| {
                    epoll.control(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN)?;
                    Ok(client)
                });
                match client {
                    Ok(client) => {
                        clients.insert(fd, client);
                    }
                    Err(e) => eprintln!("echo_epoll: dropping {peer}: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if shared::is_fd_exhaustion(&e) => return Err(e),
            // Other errors concern one client (e.g. it reset before we accepted).
            Err(e) => eprintln!("echo_epoll: accept failed: {e}"),
        }
    }
}
