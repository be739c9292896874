//! The load generator on io_uring (Linux 6.0 or later): each round, one `io_uring_enter`
//! submits every request the round wrote and waits for the next answers.
//!
//! On loopback most of a request's cost is the kernel's TCP path, which no loop avoids
//! (the sender's CPU even runs the receiver's side of it, and the server pays the same
//! for its answers). What a load generator can shed is everything around that path, so
//! that the server, not the load, is the limit:
//!
//! - no system call per request: the round's sends go in one submission;
//! - no receive per request: each connection's one multishot `recv`, armed once, brings
//!   every answer into a buffer the kernel picks from a ring of provided buffers (the
//!   receive is never tried before an answer can be there, and never re-armed);
//! - fewer wake-ups, on both sides: a round waits for a share of the answers in flight,
//!   so the server's answers wake the load generator a few times per round, not once
//!   each; and the ring's completions are posted when it asks (`DEFER_TASKRUN`);
//! - one clock reading per round, none per request, and no descriptor lookup per
//!   operation (the sockets are registered with the ring).
//!
//! Each connection owns the memory its operations point to (its request, on the heap, so
//! the connection's record may move while a send is in flight), and nothing is freed
//! while the kernel may still use it: see [`Uring`]'s `Drop`.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use shared::Error;
use shared::uring::{UringSetup, kernel_at_least};
use socket2::{Domain, SockAddr, Socket, Type};

use super::buf_ring::BufRing;
use super::{CONNECT_WINDOW, Exchange, Load, Mark, Measured, Parent, Step, Timeline, failed};
use crate::net::BUFFER;

/// What the load generator submits, and what it says where io_uring is unusable.
const SETUP: UringSetup = UringSetup {
    who: "the io_uring load generator",
    needs: &[
        ("connect", opcode::Connect::CODE),
        ("send", opcode::Send::CODE),
        ("recv", opcode::Recv::CODE),
        ("poll_add", opcode::PollAdd::CODE),
    ],
    instead: "--load-driver mio runs the load on mio instead",
    simulate_var: "STAGE5_LOAD_URING_SIMULATE",
    simulate_fn: "shared::uring::simulate_setup_error",
};

/// A round waits for this share of the answers in flight (an eighth)...
const BATCH_SHARE: usize = 8;
/// ... but for no more than this many...
const BATCH_MAX: usize = 64;
/// ... and, once one is in, no longer than this (Linux 6.12's minimum wait; before it,
/// a round waits for one answer).
const BATCH_WAIT_MICROS: u32 = 50;

/// Why io_uring cannot run the load here, if it cannot.
pub(super) fn unavailable() -> Option<String> {
    let ring = match build(1) {
        Ok(ring) => ring,
        Err(error) => return Some(error.to_string()),
    };
    // A multishot receive needs 6.0 (and provided buffer rings 5.19): no feature flag
    // says so, the version does.
    if !kernel_at_least(6, 0) {
        return Some(format!(
            "{} needs Linux 6.0 or later (multishot receive). {}",
            SETUP.who, SETUP.instead
        ));
    }
    // Provided buffer rings came with 5.19, and a kernel may refuse them.
    let mut buffers = match BufRing::new(1, 64) {
        Ok(buffers) => buffers,
        Err(error) => return Some(format!("allocating receive buffers: {error}")),
    };
    let registered = buffers.register(&ring.submitter(), 0);
    buffers.unregister(&ring.submitter());
    registered.err().map(|error| {
        format!(
            "registering receive buffers with io_uring: {error}. {}",
            SETUP.instead
        )
    })
}

/// The ring for `connections`, with the setup flags that suit one thread doing all the
/// work, the newest the kernel takes: `SINGLE_ISSUER` and `DEFER_TASKRUN` (Linux 6.1: the
/// kernel posts completions in one batch when we enter the ring, instead of interrupting
/// us as each is done), else `COOP_TASKRUN` (5.19), else none.
fn build(connections: usize) -> io::Result<IoUring> {
    // Room to submit a send for every connection in a few enters, and to post a
    // completion for every operation in flight without overflowing: a send and an answer
    // per connection, a connect, a send and an answer per one connecting.
    let sq = (connections + 3 * CONNECT_WINDOW)
        .next_power_of_two()
        .min(4096) as u32;
    let cq = (2 * connections + 3 * CONNECT_WINDOW).next_power_of_two() as u32;
    let cq = cq.clamp(2 * sq, 65536);
    let ring = SETUP.ring(|| {
        let mut deferred = IoUring::builder();
        deferred
            .setup_cqsize(cq)
            .setup_single_issuer()
            .setup_defer_taskrun();
        let mut cooperative = IoUring::builder();
        cooperative.setup_cqsize(cq).setup_coop_taskrun();
        let mut plain = IoUring::builder();
        plain.setup_cqsize(cq);
        deferred
            .build(sq)
            .or_else(|_| cooperative.build(sq))
            .or_else(|_| plain.build(sq))
    })?;
    // A wait with a timeout (and no timeout operation to cancel after it) needs 5.11.
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "{} needs Linux 6.0 or later (io_uring_enter with a timeout). {}",
                SETUP.who, SETUP.instead
            ),
        ));
    }
    Ok(ring)
}

/// What an operation was, in the low bits of its `user_data`; the connection's index
/// is above them.
const CONNECT: u64 = 1;
const SEND: u64 = 2;
const RECV: u64 = 3;
const KIND_BITS: u32 = 2;
/// The poll on the parent's pipe (our stdin), when paced.
const PARENT: u64 = u64::MAX;

/// One connection: its socket, its exchange, and where its operations are.
struct Slot {
    socket: Socket,
    exchange: Exchange,
    /// Its request's send has not completed: the request must stay as it is.
    sending: bool,
    /// Its answer came before its send's completion: the next request waits for it.
    next_waits: bool,
    /// Its multishot receive is armed.
    receiving: bool,
}

/// The ring, the connections, and how many operations the kernel still holds.
struct Uring<'a> {
    load: &'a Load,
    ring: IoUring,
    slots: Vec<Slot>,
    /// The receive buffers every answer lands in.
    buffers: BufRing,
    /// The server's address, which every `connect` points to (boxed: it stays put).
    addr: Box<SockAddr>,
    /// Operations submitted and not completed (a multishot receive until its last
    /// completion), the parent's poll aside: the ones that point into `slots`,
    /// `buffers` or `addr`.
    in_flight: usize,
    /// Requests sent and not yet answered.
    waiting: usize,
    /// This round's completions, copied out of the queue to act on.
    completions: Vec<cqueue::Entry>,
}

/// Runs `load` on io_uring (see [`super::run`]).
pub(super) fn run(load: &Load, mark: &mut dyn FnMut(Mark)) -> Result<Measured, Error> {
    let ring = build(load.connections).map_err(failed("setting up io_uring"))?;
    // One buffer per answer in flight, and a little more than an answer each, so that a
    // byte too many arrives with the answer and is caught there.
    let size = (super::answer_len(load) + 64).min(BUFFER);
    let mut buffers = BufRing::new(load.connections + CONNECT_WINDOW, size)
        .map_err(failed("allocating receive buffers"))?;
    buffers
        .register(&ring.submitter(), 0)
        .map_err(failed("registering receive buffers with io_uring"))?;
    ring.submitter()
        .register_files_sparse(load.connections as u32)
        .map_err(failed("registering a table of sockets with io_uring"))?;
    let mut uring = Uring {
        load,
        ring,
        slots: Vec::with_capacity(load.connections),
        buffers,
        addr: Box::new(SockAddr::from(load.addr)),
        in_flight: 0,
        waiting: 0,
        completions: Vec::new(),
    };
    uring.drive(mark)
}

impl Uring<'_> {
    fn drive(&mut self, mark: &mut dyn FnMut(Mark)) -> Result<Measured, Error> {
        let load = self.load;
        let mut timeline = Timeline::new(load);
        let mut parent = Parent::new(load.paced)?;
        if load.paced {
            self.watch_parent()?;
        }
        let mut now = Instant::now();
        loop {
            for _ in 0..timeline.to_open(self.slots.len()) {
                self.open(now)?;
            }
            let timeout = match timeline.step(now, &parent, mark)? {
                Step::Done(measured) => return Ok(measured),
                Step::StartAll => {
                    for id in 0..self.slots.len() {
                        self.request(id, now)?;
                    }
                    continue;
                }
                Step::Wait(timeout) => timeout,
            };
            self.enter(timeout)?;
            // NB: one clock reading per round: a request leaves, and its answer is seen,
            // when the round does.
            now = Instant::now();
            let mut completions = std::mem::take(&mut self.completions);
            completions.extend(self.ring.completion());
            let mut result = Ok(());
            for completion in completions.drain(..) {
                self.retire(&completion);
                if result.is_ok() {
                    result = self.complete(&completion, now, &mut timeline, &mut parent);
                }
            }
            self.completions = completions;
            result?;
        }
    }

    /// Counts out an operation whose last completion this is. (Every completion is
    /// counted, even after an error, so that the drain knows what the kernel still holds.)
    fn retire(&mut self, completion: &cqueue::Entry) {
        if completion.user_data() != PARENT && !cqueue::more(completion.flags()) {
            self.in_flight -= 1;
        }
    }

    /// Acts on one completion.
    fn complete(
        &mut self,
        completion: &cqueue::Entry,
        now: Instant,
        timeline: &mut Timeline,
        parent: &mut Parent,
    ) -> Result<(), Error> {
        let (user_data, result) = (completion.user_data(), completion.result());
        if user_data == PARENT {
            if result < 0 {
                return Err(Error::io("waiting for stdin", errno(result)));
            }
            parent.read()?;
            return if parent.end {
                Ok(())
            } else {
                self.watch_parent()
            };
        }
        let id = (user_data >> KIND_BITS) as usize;
        let slot = &mut self.slots[id];
        match user_data & ((1 << KIND_BITS) - 1) {
            CONNECT if result < 0 => Err(Error::io("connecting", errno(result))),
            CONNECT => Ok(()),
            SEND if result < 0 => Err(match -result {
                libc::EPIPE | libc::ECONNRESET => slot.exchange.closed("sending"),
                _ => Error::io("sending a request", errno(result)),
            }),
            // NB: MSG_WAITALL: the kernel sends the rest of a short send itself, so a
            // short result means the connection failed part-way.
            SEND if (result as usize) < slot.exchange.request.len() => {
                Err(slot.exchange.closed("part of a request sent"))
            }
            SEND => {
                slot.sending = false;
                if std::mem::take(&mut slot.next_waits) {
                    self.request(id, now)?;
                }
                Ok(())
            }
            RECV => self.received(id, completion, now, timeline),
            kind => unreachable!("an operation of kind {kind}"),
        }
    }

    /// A completion of connection `id`'s multishot receive: a piece of an answer (in a
    /// buffer of the ring, given back at once), or the end of the receive.
    fn received(
        &mut self,
        id: usize,
        completion: &cqueue::Entry,
        now: Instant,
        timeline: &mut Timeline,
    ) -> Result<(), Error> {
        let (result, flags) = (completion.result(), completion.flags());
        let slot = &mut self.slots[id];
        slot.receiving = cqueue::more(flags);
        let whole = match (result, cqueue::buffer_select(flags)) {
            (n, Some(bid)) if n > 0 => {
                let bytes = self.buffers.buffer(bid, n as usize);
                let whole = slot.exchange.take(bytes, self.load.protocol);
                self.buffers.recycle(bid);
                whole?
            }
            (0, _) => return Err(slot.exchange.closed("end of stream")),
            // Every buffer was taken: this round gives them back, and it re-arms.
            (n, _) if n == -libc::ENOBUFS => false,
            (n, _) => return Err(Error::io("reading an answer", errno(n))),
        };
        if !slot.receiving {
            self.arm(id)?;
        }
        if whole {
            self.waiting -= 1;
            if timeline.answered(&self.slots[id].exchange, now) {
                self.request(id, now)?;
            }
        }
        Ok(())
    }

    /// Opens one more connection: its `connect`, linked to its first request's `send`,
    /// linked to the multishot `recv` of every answer it will get, all in the next
    /// round's submission.
    fn open(&mut self, now: Instant) -> Result<(), Error> {
        let id = self.slots.len();
        // NB: a blocking socket, unlike mio's: io_uring waits for the socket itself (and
        // would hand an O_NONBLOCK socket's EAGAIN back to us instead).
        let socket = Socket::new(Domain::for_address(self.load.addr), Type::STREAM, None)
            .map_err(failed("opening a socket"))?;
        socket
            .set_tcp_nodelay(true)
            .map_err(failed("setting TCP_NODELAY"))?;
        self.ring
            .submitter()
            .register_files_update(id as u32, &[socket.as_raw_fd()])
            .map_err(failed("registering a socket with io_uring"))?;
        let mut exchange = Exchange::new(id, self.load);
        exchange.next_request(self.load, now);
        self.slots.push(Slot {
            socket,
            exchange,
            sending: true,
            next_waits: false,
            receiving: true,
        });
        self.waiting += 1;
        let connect = opcode::Connect::new(self.fd(id), self.addr.as_ptr().cast(), self.addr.len())
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(user_data(id, CONNECT));
        let send = self.send_entry(id).flags(squeue::Flags::IO_LINK);
        let recv = self.recv_entry(id);
        // SAFETY: `addr` is boxed and lives as long as the ring's operations may (see
        // `Drop`); as `send_entry` and `recv_entry` say for the others.
        unsafe { self.push(&[connect, send, recv]) }
    }

    /// Queues connection `id`'s next request (or has it follow the completion of the
    /// last one's send).
    fn request(&mut self, id: usize, now: Instant) -> Result<(), Error> {
        let slot = &mut self.slots[id];
        if slot.sending {
            // The last request is the kernel's until its send completes: after that.
            slot.next_waits = true;
            return Ok(());
        }
        slot.exchange.next_request(self.load, now);
        slot.sending = true;
        self.waiting += 1;
        let send = self.send_entry(id);
        // SAFETY: as `send_entry` says.
        unsafe { self.push(&[send]) }
    }

    /// Arms connection `id`'s multishot receive again, after the kernel ended it.
    fn arm(&mut self, id: usize) -> Result<(), Error> {
        self.slots[id].receiving = true;
        let recv = self.recv_entry(id);
        // SAFETY: as `recv_entry` says.
        unsafe { self.push(&[recv]) }
    }

    /// The `send` of connection `id`'s request. It points into the request, which lives
    /// on the heap (it does not move with the slot), is not rewritten while `sending`,
    /// and is not freed while the kernel holds it (see `Drop`).
    fn send_entry(&self, id: usize) -> squeue::Entry {
        let request = &self.slots[id].exchange.request;
        opcode::Send::new(self.fd(id), request.as_ptr(), request.len() as u32)
            .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(id, SEND))
    }

    /// The multishot `recv` of connection `id`'s answers. It points at no memory of the
    /// connection's: the kernel writes into the ring's buffers, which outlive it (see
    /// `Drop`).
    fn recv_entry(&self, id: usize) -> squeue::Entry {
        opcode::RecvMulti::new(self.fd(id), self.buffers.group())
            .build()
            .user_data(user_data(id, RECV))
    }

    /// Connection `id`'s socket, as the ring knows it: registered at `id` in its table
    /// of files, so an operation on it need not look the descriptor up (and count a
    /// reference to the socket) every time.
    fn fd(&self, id: usize) -> types::Fixed {
        types::Fixed(id as u32)
    }

    /// Queues a poll for the parent's next line on our stdin.
    fn watch_parent(&mut self) -> Result<(), Error> {
        let poll = opcode::PollAdd::new(types::Fd(0), libc::POLLIN as u32)
            .build()
            .user_data(PARENT);
        // SAFETY: a poll points at no memory; stdin stays open.
        unsafe { self.push(&[poll]) }
    }

    /// Queues `entries` (a linked chain stays in one submission), for the next enter.
    ///
    /// # Safety
    ///
    /// Every pointer in `entries` must stay valid until the operation's completion.
    unsafe fn push(&mut self, entries: &[squeue::Entry]) -> Result<(), Error> {
        let free = |ring: &mut IoUring| {
            let sq = ring.submission();
            sq.capacity() - sq.len()
        };
        if free(&mut self.ring) < entries.len() {
            self.ring
                .submit()
                .map_err(failed("submitting to io_uring"))?;
        }
        if free(&mut self.ring) < entries.len() {
            return Err(Error::Other(
                "the io_uring submission queue stayed full".into(),
            ));
        }
        // SAFETY: there is room for all of them; the caller vouches for the pointers.
        unsafe { self.ring.submission().push_multiple(entries) }
            .map_err(|_| Error::Other("the io_uring submission queue is full".into()))?;
        // (The parent's poll holds no memory: the drain does not wait for it.)
        self.in_flight += entries
            .iter()
            .filter(|e| e.get_user_data() != PARENT)
            .count();
        Ok(())
    }

    /// Gives the round's buffers back, submits what the round queued and waits, at most
    /// `timeout`, for a share of the answers in flight: one `io_uring_enter`.
    fn enter(&mut self, timeout: Duration) -> Result<(), Error> {
        self.buffers.publish();
        let timespec = types::Timespec::from(timeout);
        let mut args = types::SubmitArgs::new().timespec(&timespec);
        let mut want = 1;
        if self.ring.params().is_feature_min_timeout() {
            want = (self.waiting / BATCH_SHARE).clamp(1, BATCH_MAX);
            // (For one, no holding out: a minimum wait alone costs the kernel a timer.)
            if want > 1 {
                args = args.min_wait_usec(BATCH_WAIT_MICROS);
            }
        }
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => Ok(()),
            // The timeout passed, or a signal came: the loop looks around and comes back.
            Err(error) if error.raw_os_error() == Some(libc::ETIME) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(()),
            // The completion queue is full: the loop reaps, the next round submits.
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(error) => Err(Error::io("waiting for the server", error)),
        }
    }
}

impl Drop for Uring<'_> {
    /// Ends every operation before the memory it points to goes: each connection is shut
    /// down, so its receive ends (with nothing) and a send or connect fails, and the ring
    /// is drained. Should the kernel hold some past the deadline, their memory is leaked
    /// rather than freed under it.
    fn drop(&mut self) {
        for slot in &self.slots {
            let _ = slot.socket.shutdown(Shutdown::Both);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        self.waiting = 0; // no batch to wait for
        while self.in_flight > 0 && Instant::now() < deadline {
            if self.enter(Duration::from_millis(10)).is_err() {
                break;
            }
            let completions: Vec<cqueue::Entry> = self.ring.completion().collect();
            for completion in &completions {
                self.retire(completion);
            }
        }
        if self.in_flight == 0 {
            self.buffers.unregister(&self.ring.submitter());
        } else {
            eprintln!(
                "warning: the kernel still held {} operations of the load generator after \
                 5 s; their memory is left allocated",
                self.in_flight
            );
            self.buffers.leak();
            std::mem::forget(std::mem::take(&mut self.slots));
            let addr = Box::new(SockAddr::from(self.load.addr));
            std::mem::forget(std::mem::replace(&mut self.addr, addr));
        }
    }
}

fn user_data(id: usize, kind: u64) -> u64 {
    ((id as u64) << KIND_BITS) | kind
}

/// The error of a negative completion result.
fn errno(result: i32) -> io::Error {
    io::Error::from_raw_os_error(-result)
}
