//! The same echo server on Linux's `io_uring(7)`: completion instead of readiness, on the
//! `io-uring` crate (the ring's memory and system calls; the loop is ours).
//!
//! Over [`epoll`](super::epoll), the loop never asks "which socket is ready?". It puts
//! whole operations on the *submission queue* ("accept on the listener", "receive into
//! this buffer", "send these bytes"), hands them to the kernel with one `io_uring_enter`,
//! and later finds their results on the *completion queue*, each tagged with the 64 bits
//! of `user_data` we gave it: here, which connection and which operation. The kernel does
//! the `accept`, the `recv` and the `send` itself. So the buffer of a receive or a send
//! belongs to the kernel from submission to completion: we must not touch, move or free
//! it in between, and the loop cancels and waits for every operation before it returns.
//! Linux 5.6 or later.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_uring`.

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::{IoUring, opcode, squeue, types};
use shared::uring::UringSetup;

use super::{AcceptPause, STOP_CHECK_MS};

/// Submission queue entries; the completion queue gets twice as many.
const ENTRIES: u32 = 256;

/// The bytes one receive may bring, echoed before the next receive.
const BUF_SIZE: usize = 4096;

// ANCHOR: op
/// What an operation was for, recovered from its completion's `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// An `accept` on the listener: its result is the new client's descriptor.
    Accept,
    /// The 100 ms timeout that lets the loop look at its stop flag.
    Tick,
    /// A cancel request (at shutdown): its own completion says nothing we need.
    Cancel,
    /// A receive into a client's buffer: its result is the byte count (0: closed).
    Recv,
    /// A send from a client's buffer: its result is how many bytes went out.
    Send,
}

impl Op {
    const ALL: [Op; 5] = [Op::Accept, Op::Tick, Op::Cancel, Op::Recv, Op::Send];

    /// The `user_data` of this operation for client `id` (0 for the others): the
    /// client in the high bits, the operation in the low byte.
    fn tag(self, id: u64) -> u64 {
        (id << 8) | self as u64
    }

    /// The operation and client a completion's `user_data` names.
    fn untag(user_data: u64) -> (Op, u64) {
        let op = Op::ALL[(user_data & 0xff) as usize];
        (op, user_data >> 8)
    }
}
// ANCHOR_END: op

// ANCHOR: client
/// One client: its socket and the buffer that the kernel fills (a receive) or empties (a
/// send). Exactly one of the two operations is in flight at a time, from accept to close.
#[derive(Debug)]
struct Client {
    socket: OwnedFd,
    /// Heap memory that does not move when the map of clients grows: the kernel keeps
    /// the pointer we gave it. Ours again only when the operation's completion is in.
    buf: Box<[u8]>,
    /// The bytes received and to be echoed (`..filled`), and how many of them are sent.
    filled: usize,
    sent: usize,
}

impl Client {
    /// "Receive into the whole buffer."
    fn recv(&mut self, id: u64) -> squeue::Entry {
        let fd = types::Fd(self.socket.as_raw_fd());
        opcode::Recv::new(fd, self.buf.as_mut_ptr(), self.buf.len() as u32)
            .build()
            .user_data(Op::Recv.tag(id))
    }

    /// "Send what is received and not sent yet." A send may take only part of it, like
    /// `write(2)`: the completion says how much, and the rest is sent again.
    fn send(&self, id: u64) -> squeue::Entry {
        let fd = types::Fd(self.socket.as_raw_fd());
        let rest = &self.buf[self.sent..self.filled];
        opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(Op::Send.tag(id))
    }
}
// ANCHOR_END: client

/// The ring, and how many of our operations the kernel has not answered yet.
struct Ring {
    ring: IoUring,
    in_flight: usize,
}

impl Ring {
    /// Puts `entry` on the submission queue; if the queue is full, hands it to the kernel
    /// first to make room.
    ///
    /// # Safety
    ///
    /// Every buffer `entry` points into must stay valid and untouched until its
    /// completion has been reaped.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: the caller's promise.
        while unsafe { self.ring.submission().push(entry) }.is_err() {
            self.ring.submit()?;
        }
        if entry.get_user_data() != Op::Cancel.tag(0) {
            self.in_flight += 1;
        }
        Ok(())
    }

    /// Submits what is queued and waits for at least one completion, then moves every
    /// completion out of the queue into `done`.
    fn submit_and_wait(&mut self, done: &mut Vec<(Op, u64, i32)>) -> io::Result<()> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => {}
            // A signal, or completions overflowing the queue: reap what is there.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        done.clear();
        for completion in self.ring.completion() {
            let (op, id) = Op::untag(completion.user_data());
            if op != Op::Cancel {
                self.in_flight -= 1;
            }
            done.push((op, id, completion.result()));
        }
        Ok(())
    }
}

// ANCHOR: serve
/// Echoes every client of `listener` until `stop` is set (checked every 100 ms).
///
/// Returns an error if io_uring is unavailable (with the reason: see [`check`]) or fails.
pub fn serve(listener: TcpListener, stop: &AtomicBool) -> io::Result<()> {
    // NB: a blocking listener. The kernel waits for the client for us; an O_NONBLOCK one
    // would make some kernels complete the accept at once with EAGAIN.
    listener.set_nonblocking(false)?;
    let mut ring = Ring {
        ring: new_ring()?,
        in_flight: 0,
    };
    let mut clients = HashMap::new();
    let result = run(&mut ring, &mut clients, &listener, stop);
    // Whether the loop ended well or not, operations may be in flight.
    if let Err(e) = shut_down(&mut ring, &clients) {
        // The kernel may still own some buffers: leaking them is the only safe end.
        std::mem::forget(clients);
        return Err(e);
    }
    result
}

/// The completion loop: submit, wait, and answer each completion with the client's next
/// operation.
fn run(
    ring: &mut Ring,
    clients: &mut HashMap<u64, Client>,
    listener: &TcpListener,
    stop: &AtomicBool,
) -> io::Result<()> {
    let tick = types::Timespec::new().nsec(STOP_CHECK_MS as u32 * 1_000_000);
    let timeout = opcode::Timeout::new(&tick)
        .build()
        .user_data(Op::Tick.tag(0));
    // Accept, with close-on-exec, and without the peer's address (null pointers).
    let listen_fd = types::Fd(listener.as_raw_fd());
    let accept = opcode::Accept::new(listen_fd, std::ptr::null_mut(), std::ptr::null_mut())
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(Op::Accept.tag(0));
    // SAFETY: the kernel reads a timeout's timespec when the entry is submitted, and
    // `tick` outlives every submission of this function.
    unsafe { ring.push(&timeout)? };
    let (mut accepting, mut pause) = (false, AcceptPause::default());
    let mut next_id = 1;
    let mut done = Vec::new();

    while !stop.load(Ordering::Relaxed) {
        // One accept in flight at a time, none while out of descriptors.
        if !accepting && pause.is_over() {
            // SAFETY: an accept points at no memory of ours (null address pointers).
            unsafe { ring.push(&accept)? };
            accepting = true;
        }
        // One system call: hand over every queued operation, wait for a completion.
        ring.submit_and_wait(&mut done)?;
        // Each completion names its operation and client; its result is what the
        // system call would have returned (`-errno` for an error).
        for &(op, id, result) in &done {
            let next = match op {
                Op::Cancel => None,
                // Re-armed on every expiry: the loop wakes at least every 100 ms.
                Op::Tick => Some(timeout.clone()),
                Op::Accept => {
                    accepting = false;
                    match to_result(result) {
                        Ok(fd) => {
                            // SAFETY: a successful accept's result is a new descriptor
                            // that nothing else owns.
                            let socket = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
                            let client = Client {
                                socket,
                                buf: vec![0; BUF_SIZE].into_boxed_slice(),
                                filled: 0,
                                sent: 0,
                            };
                            let id = next_id;
                            next_id += 1;
                            Some(clients.entry(id).insert_entry(client).into_mut().recv(id))
                        }
                        // The client stays queued in the kernel: accept again later.
                        Err(e) if shared::is_fd_exhaustion(&e) => {
                            pause.start("echo_uring", &e);
                            None
                        }
                        // One client's problem (e.g. it reset before the accept).
                        Err(e) => {
                            eprintln!("echo_uring: accept failed: {e}");
                            None
                        }
                    }
                }
                Op::Recv | Op::Send => {
                    let Some(client) = clients.get_mut(&id) else {
                        continue; // cannot happen: a client lives until its last op ends
                    };
                    // The completion hands the buffer back to us.
                    let next = match (op, to_result(result)) {
                        (Op::Recv, Ok(0)) => None, // the client closed its end
                        (Op::Recv, Ok(n)) => {
                            (client.filled, client.sent) = (n as usize, 0);
                            Some(client.send(id))
                        }
                        (_, Ok(n)) => {
                            client.sent += n as usize;
                            if client.sent < client.filled {
                                Some(client.send(id)) // a partial send: the rest
                            } else {
                                Some(client.recv(id)) // all echoed: receive again
                            }
                        }
                        (Op::Recv, Err(e)) if e.kind() == io::ErrorKind::Interrupted => {
                            Some(client.recv(id))
                        }
                        (_, Err(e)) if e.kind() == io::ErrorKind::Interrupted => {
                            Some(client.send(id))
                        }
                        (_, Err(_)) => None, // reset, broken pipe: the client is gone
                    };
                    if next.is_none() {
                        // Nothing of it is in flight any more: close it.
                        clients.remove(&id);
                    }
                    next
                }
            };
            if let Some(entry) = next {
                // SAFETY: a receive or send points into its client's boxed buffer, which
                // stays in `clients` (and untouched) until its completion is reaped; a
                // timeout or an accept points at nothing that could go (see above).
                unsafe { ring.push(&entry)? };
            }
        }
    }
    Ok(())
}
// ANCHOR_END: serve

// ANCHOR: shut_down
/// Cancels every operation still in flight and waits for all their completions: until
/// then the kernel may still write into a client's buffer, which must not be freed.
fn shut_down(ring: &mut Ring, clients: &HashMap<u64, Client>) -> io::Result<()> {
    let mut targets = vec![Op::Tick.tag(0), Op::Accept.tag(0)];
    for (&id, client) in clients {
        let op = if client.sent < client.filled {
            Op::Send
        } else {
            Op::Recv
        };
        targets.push(op.tag(id));
    }
    for target in targets {
        let cancel = opcode::AsyncCancel::new(target)
            .build()
            .user_data(Op::Cancel.tag(0));
        // SAFETY: a cancel points at nothing; it names its target by `user_data` (one
        // that is not in flight is answered with ENOENT).
        unsafe { ring.push(&cancel)? };
    }
    let mut done = Vec::new();
    while ring.in_flight > 0 {
        ring.submit_and_wait(&mut done)?;
    }
    Ok(())
}
// ANCHOR_END: shut_down

/// A completion's result as `io::Result`: `-errno` is an error, anything else a count
/// or a descriptor.
fn to_result(result: i32) -> io::Result<u32> {
    u32::try_from(result).map_err(|_| io::Error::from_raw_os_error(-result))
}

// ANCHOR: check
/// Whether io_uring can run this server here: `Ok`, or an error that says why not (an
/// old kernel, the `kernel.io_uring_disabled` sysctl, a seccomp filter) and what to run
/// instead.
pub fn check() -> io::Result<()> {
    new_ring().map(drop)
}

/// Makes the next rings set up on this thread fail as if `io_uring_setup` had returned
/// `errno`, to see the refusal where io_uring works; the environment variable
/// `STAGE1_URING_SIMULATE=ENOSYS` (or `EPERM`) does the same for a process.
pub use shared::uring::simulate_setup_error;

/// What this server submits, and what it says where io_uring is unusable.
const SETUP: UringSetup = UringSetup {
    who: "echo_uring",
    needs: &[
        ("accept", opcode::Accept::CODE),
        ("recv", opcode::Recv::CODE),
        ("send", opcode::Send::CODE),
        ("timeout", opcode::Timeout::CODE),
        ("async_cancel", opcode::AsyncCancel::CODE),
    ],
    instead: "`--example echo_epoll` is the same server on epoll",
    simulate_var: "STAGE1_URING_SIMULATE",
    simulate_fn: "simulate_setup_error",
};

/// Sets up a ring, or explains why there is none.
fn new_ring() -> io::Result<IoUring> {
    SETUP.ring(|| IoUring::new(ENTRIES))
}
// ANCHOR_END: check
