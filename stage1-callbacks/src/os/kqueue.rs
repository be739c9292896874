//! The same echo server on `kqueue(2)`, straight on libc: epoll's counterpart on macOS and
//! the BSDs, and what mio uses there.
//!
//! Like Linux's epoll, kqueue keeps the interest list in the kernel and returns
//! only what is ready. It differs in shape: one call, `kevent`, takes a *changelist*
//! (registrations to add, enable, disable or delete) and fills an *eventlist* (what is
//! ready), where epoll has `epoll_ctl` for one change and `epoll_wait` for events. And
//! each entry is a (descriptor, *filter*) pair: reading and writing are two filters,
//! `EVFILT_READ` and `EVFILT_WRITE`, each registered and switched on its own, where epoll
//! keeps one bit mask per descriptor. An event names its descriptor (`ident`) and filter,
//! so it needs no tag of ours.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_kqueue` (macOS and the BSDs).

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{AcceptPause, Connection, STOP_CHECK_MS};

// NetBSD's `struct kevent` has wider `filter` and `flags` fields than the others'.
#[cfg(not(target_os = "netbsd"))]
type Filter = i16;
#[cfg(not(target_os = "netbsd"))]
type Flags = u16;
#[cfg(target_os = "netbsd")]
type Filter = u32;
#[cfg(target_os = "netbsd")]
type Flags = u32;

// ANCHOR: kqueue
/// A kqueue: the kernel's list of what we wait for. Closed when dropped.
struct Kqueue(OwnedFd);

/// One entry of a changelist: apply `flags` (`EV_ADD`, `EV_ENABLE`, ...) to the `filter`
/// of descriptor `fd`.
fn change(fd: RawFd, filter: Filter, flags: Flags) -> libc::kevent {
    // SAFETY: `kevent` is integers and a pointer, all of which may be zero (a null
    // `udata`: we identify events by their descriptor).
    let mut entry: libc::kevent = unsafe { std::mem::zeroed() };
    entry.ident = fd as libc::uintptr_t;
    entry.filter = filter;
    entry.flags = flags;
    entry
}

impl Kqueue {
    fn new() -> io::Result<Kqueue> {
        // SAFETY: kqueue takes no arguments; a non-negative result is a new descriptor
        // that nothing else owns, so OwnedFd may take it.
        let fd = unsafe { libc::kqueue() };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let kqueue = Kqueue(unsafe { OwnedFd::from_raw_fd(fd) });
        // NB: macOS has no kqueue1(O_CLOEXEC): close-on-exec is set afterwards, as mio does.
        // SAFETY: F_SETFD on an open descriptor takes an integer, no pointer.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(kqueue)
    }

    /// Applies a changelist in one call and reports the first change that failed.
    ///
    /// NB: `kevent` could also carry these changes on the next wait and save a call, but
    /// then a failed change comes back mixed with the events, or, when the eventlist is
    /// full, fails the whole call after applying only some changes. Like mio, we apply
    /// changes on their own with `EV_RECEIPT`: the kernel answers each change with one
    /// entry, `EV_ERROR` set and `data` its error number (0 for success), and returns no
    /// pending event.
    fn apply<const N: usize>(&self, mut changes: [libc::kevent; N]) -> io::Result<()> {
        for change in &mut changes {
            change.flags |= libc::EV_RECEIPT;
        }
        let (kq, list) = (self.0.as_raw_fd(), changes.as_mut_ptr());
        // SAFETY: `list` holds N initialised entries; the kernel reads the changes, then
        // writes one receipt per change (N at most) into the same array, which kevent(2)
        // allows. No timeout is needed: receipts do not wait.
        let n = unsafe { libc::kevent(kq, list, N as _, list, N as _, ptr::null()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for receipt in changes.iter().take(n as usize) {
            let error = receipt.data as i32;
            // EPIPE: the peer closed before we registered; the filter is added all the
            // same and reports the end (mio ignores it for the same reason).
            if receipt.flags & libc::EV_ERROR != 0 && error != 0 && error != libc::EPIPE {
                return Err(io::Error::from_raw_os_error(error));
            }
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` and fills `events` with the ready (descriptor, filter)
    /// pairs: an empty changelist, a full eventlist.
    fn wait(&self, events: &mut Vec<libc::kevent>, timeout_ms: i32) -> io::Result<()> {
        events.clear();
        let capacity = events.capacity().min(i32::MAX as usize);
        let timeout = libc::timespec {
            tv_sec: (timeout_ms / 1000) as libc::time_t,
            tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
        };
        // SAFETY: no changes (null, 0); the kernel writes at most `capacity` events into
        // the vector's spare capacity, which is that large; `timeout` is valid for the
        // call. We then set the length to what it wrote.
        let n = unsafe {
            libc::kevent(
                self.0.as_raw_fd(),
                ptr::null(),
                0,
                events.as_mut_ptr(),
                capacity as _,
                &timeout,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the first `n` (<= capacity) events were initialised by kevent.
        unsafe { events.set_len(n as usize) };
        Ok(())
    }
}
// ANCHOR_END: kqueue

// ANCHOR: serve
/// Echoes every client of `listener` until `stop` is set (checked every 100 ms).
///
/// Returns an error only if kqueue itself fails.
pub fn serve(listener: TcpListener, stop: &AtomicBool) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listen_fd = listener.as_raw_fd();
    let kqueue = Kqueue::new()?;
    // NB: level-triggered (no EV_CLEAR), like select and our epoll: a descriptor that is
    // still ready is reported again. mio asks for EV_CLEAR, kqueue's edge-triggered mode.
    kqueue.apply([change(listen_fd, libc::EVFILT_READ, libc::EV_ADD)])?;
    let mut clients: HashMap<RawFd, Connection> = HashMap::new();
    let mut events = Vec::with_capacity(256);
    let mut accept = AcceptPause::default();

    while !stop.load(Ordering::Relaxed) {
        if accept.resume_now() {
            kqueue.apply([change(listen_fd, libc::EVFILT_READ, libc::EV_ENABLE)])?;
        }
        match kqueue.wait(&mut events, STOP_CHECK_MS) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // Only what is ready comes back, each event naming its descriptor and filter.
        for event in &events {
            let fd = event.ident as RawFd;
            if fd == listen_fd {
                if let Err(e) = accept_all(&listener, &kqueue, &mut clients) {
                    // Level-triggered, the listener would be reported again at once.
                    accept.start("echo_kqueue", &e);
                    kqueue.apply([change(listen_fd, libc::EVFILT_READ, libc::EV_DISABLE)])?;
                }
                continue;
            }
            // A client closed in this batch may still have an event queued: skip it.
            let Some(client) = clients.get_mut(&fd) else {
                continue;
            };
            let was_writing = client.wants_write();
            let alive = if event.filter == libc::EVFILT_WRITE {
                client.on_writable()
            } else {
                client.on_readable()
            };
            if !alive {
                // Closing the descriptor also deletes its filters from the kqueue.
                clients.remove(&fd);
            } else if client.wants_write() != was_writing {
                // Switch between waiting to read and waiting to write: one changelist,
                // two changes, one filter off and the other on.
                let (off, on) = if was_writing {
                    (libc::EVFILT_WRITE, libc::EVFILT_READ)
                } else {
                    (libc::EVFILT_READ, libc::EVFILT_WRITE)
                };
                let switched = kqueue.apply([
                    change(fd, off, libc::EV_DISABLE),
                    change(fd, on, libc::EV_ENABLE),
                ]);
                if let Err(e) = switched {
                    eprintln!("echo_kqueue: dropping client {fd}: {e}");
                    clients.remove(&fd);
                }
            }
        }
    }
    Ok(())
}
// ANCHOR_END: serve

/// Accepts every pending client (until `WouldBlock`) and registers both its filters,
/// reading enabled and writing disabled. `Err` when out of descriptors.
fn accept_all(
    listener: &TcpListener,
    kqueue: &Kqueue,
    clients: &mut HashMap<RawFd, Connection>,
) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let fd = stream.as_raw_fd();
                let client = Connection::new(stream).and_then(|client| {
                    kqueue.apply([
                        change(fd, libc::EVFILT_READ, libc::EV_ADD),
                        change(fd, libc::EVFILT_WRITE, libc::EV_ADD | libc::EV_DISABLE),
                    ])?;
                    Ok(client)
                });
                match client {
                    Ok(client) => {
                        clients.insert(fd, client);
                    }
                    Err(e) => eprintln!("echo_kqueue: dropping {peer}: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if shared::is_fd_exhaustion(&e) => return Err(e),
            // Other errors concern one client (e.g. it reset before we accepted).
            Err(e) => eprintln!("echo_kqueue: accept failed: {e}"),
        }
    }
}
