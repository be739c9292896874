//! The load generator on io_uring (Linux): each round, one `io_uring_enter` submits every
//! request and receive the round queued and waits for the next answers.
//!
//! On loopback most of a request's cost is the kernel's TCP path, which no loop avoids
//! (the sender's CPU even runs the receiver's side of it). What a loop can save is
//! everything around it: this one makes no `epoll_wait`, no `send` or `recv` call per
//! request, and reads the clock once per round.
//!
//! Per request: a `send` linked to the `recv` of its answer (`IOSQE_IO_LINK`), so both go
//! in one submission and the `recv` starts only once the whole request is sent. Each
//! connection owns the memory its operations point to (the request and a receive buffer,
//! on the heap, so a connection's record may move while they are in flight), and nothing
//! is freed while the kernel may still write into it: see [`Uring`]'s `Drop`.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use shared::Error;
use shared::uring::UringSetup;
use socket2::{Domain, SockAddr, Socket, Type};

use super::{CONNECT_WINDOW, Exchange, Load, Mark, Measured, Parent, Step, Timeline, failed};

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

/// Why io_uring cannot run the load here, if it cannot.
pub(super) fn unavailable() -> Option<String> {
    match build(1) {
        Ok(_) => None,
        Err(error) => Some(error.to_string()),
    }
}

/// The ring for `connections`, with the setup flags that suit one thread doing all the
/// work, the newest the kernel takes: `SINGLE_ISSUER` and `DEFER_TASKRUN` (Linux 6.1: the
/// kernel posts completions in one batch when we enter the ring, instead of interrupting
/// us as each is done), else `COOP_TASKRUN` (5.19), else none.
fn build(connections: usize) -> io::Result<IoUring> {
    // Room to submit a send and a receive for every connection in a few enters, and to
    // post a completion for every operation in flight (two per connection, three for
    // each one connecting) without overflowing.
    let sq = (2 * connections + 3 * CONNECT_WINDOW)
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
                "{} needs Linux 5.11 or later (io_uring_enter with a timeout). {}",
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

/// One connection: its socket, its exchange, and the memory the kernel writes into.
struct Slot {
    socket: Socket,
    exchange: Exchange,
    /// Where the kernel puts the answer: on the heap, so it stays put when the slot
    /// moves. A little longer than an answer, so bytes past it are caught at once.
    buffer: Box<[u8]>,
}

/// The ring, the connections, and how many operations the kernel still holds.
struct Uring<'a> {
    load: &'a Load,
    ring: IoUring,
    slots: Vec<Slot>,
    /// The server's address, which every `connect` points to (boxed: it stays put).
    addr: Box<SockAddr>,
    /// Connects, sends and receives submitted and not completed: operations that point
    /// into `slots` or `addr`.
    in_flight: usize,
    /// This round's completions, copied out of the queue to act on.
    completions: Vec<cqueue::Entry>,
}

/// Runs `load` on io_uring (see [`super::run`]).
pub(super) fn run(load: &Load, mark: &mut dyn FnMut(Mark)) -> Result<Measured, Error> {
    let mut uring = Uring {
        load,
        ring: build(load.connections).map_err(failed("setting up io_uring"))?,
        slots: Vec::with_capacity(load.connections),
        addr: Box::new(SockAddr::from(load.addr)),
        in_flight: 0,
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
            for completion in completions.drain(..) {
                self.complete(&completion, now, &mut timeline, &mut parent)?;
            }
            self.completions = completions;
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
        self.in_flight -= 1;
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
            SEND => Ok(()),
            RECV if result < 0 => Err(Error::io("reading an answer", errno(result))),
            RECV if result == 0 => Err(slot.exchange.closed("end of stream")),
            RECV => {
                let bytes = &slot.buffer[..result as usize];
                if !slot.exchange.take(bytes, self.load.protocol)? {
                    return self.receive(id); // the rest is still on its way
                }
                if timeline.answered(&slot.exchange, now) {
                    self.request(id, now)?;
                }
                Ok(())
            }
            kind => unreachable!("an operation of kind {kind}"),
        }
    }

    /// Opens one more connection: its `connect`, linked to its first request's `send`,
    /// linked to its answer's `recv`, all in the next round's submission.
    fn open(&mut self, now: Instant) -> Result<(), Error> {
        let id = self.slots.len();
        // NB: a blocking socket, unlike mio's: io_uring waits for the socket itself (and
        // would hand an O_NONBLOCK socket's EAGAIN back to us instead).
        let socket = Socket::new(Domain::for_address(self.load.addr), Type::STREAM, None)
            .map_err(failed("opening a socket"))?;
        socket
            .set_tcp_nodelay(true)
            .map_err(failed("setting TCP_NODELAY"))?;
        let answer = super::answer_len(self.load);
        self.slots.push(Slot {
            socket,
            exchange: Exchange::new(id, self.load),
            buffer: vec![0; answer + 64].into_boxed_slice(),
        });
        let fd = types::Fd(self.slots[id].socket.as_raw_fd());
        let connect = opcode::Connect::new(fd, self.addr.as_ptr().cast(), self.addr.len())
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(user_data(id, CONNECT));
        self.slots[id].exchange.next_request(self.load, now);
        let [send, recv] = self.exchange_entries(id);
        // SAFETY: `addr` is boxed and lives as long as the ring's operations may (see
        // `Drop`); the send and receive point into the slot's heap memory (see
        // `exchange_entries`).
        unsafe { self.push(&[connect, send, recv]) }
    }

    /// Queues connection `id`'s next request and the receive of its answer.
    fn request(&mut self, id: usize, now: Instant) -> Result<(), Error> {
        self.slots[id].exchange.next_request(self.load, now);
        let entries = self.exchange_entries(id);
        // SAFETY: as `exchange_entries` says.
        unsafe { self.push(&entries) }
    }

    /// Queues one more receive on connection `id`, for the rest of an answer.
    fn receive(&mut self, id: usize) -> Result<(), Error> {
        let [_, recv] = self.exchange_entries(id);
        // SAFETY: as `exchange_entries` says.
        unsafe { self.push(&[recv]) }
    }

    /// The `send` of connection `id`'s request in flight, linked to the `recv` of its
    /// answer. They point into the slot's request and buffer, which live on the heap
    /// (they do not move with the slot), are not rewritten until the receive completes
    /// (which, linked, is after the send), and are not freed while the kernel holds them.
    fn exchange_entries(&mut self, id: usize) -> [squeue::Entry; 2] {
        let slot = &mut self.slots[id];
        let fd = types::Fd(slot.socket.as_raw_fd());
        let request = &slot.exchange.request;
        let send = opcode::Send::new(fd, request.as_ptr(), request.len() as u32)
            .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(user_data(id, SEND));
        let recv = opcode::Recv::new(fd, slot.buffer.as_mut_ptr(), slot.buffer.len() as u32)
            .build()
            .user_data(user_data(id, RECV));
        [send, recv]
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

    /// Submits what the round queued and waits for at least one completion, at most
    /// `timeout`: one `io_uring_enter`.
    fn enter(&mut self, timeout: Duration) -> Result<(), Error> {
        let timespec = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&timespec);
        match self.ring.submitter().submit_with_args(1, &args) {
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
    /// down, so its receive completes (with nothing) and a send or connect fails, and the
    /// ring is drained. Should the kernel hold some past the deadline, their memory is
    /// leaked rather than freed under it.
    fn drop(&mut self) {
        for slot in &self.slots {
            let _ = slot.socket.shutdown(Shutdown::Both);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.in_flight > 0 && Instant::now() < deadline {
            if self.enter(Duration::from_millis(10)).is_err() {
                break;
            }
            for completion in self.ring.completion() {
                if completion.user_data() != PARENT {
                    self.in_flight -= 1;
                }
            }
        }
        if self.in_flight > 0 {
            std::mem::forget(std::mem::take(&mut self.slots));
            std::mem::forget(std::mem::replace(
                &mut self.addr,
                Box::new(SockAddr::from(self.load.addr)),
            ));
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
