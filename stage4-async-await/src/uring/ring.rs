//! The ring: io_uring's submission and completion queues, and a slab of the operations
//! the kernel has not answered yet.
//!
//! An operation's slot is its `user_data`: the completion names it, and the reaper finds
//! the waker (and the buffer) there. A slot lives from submission to completion, however
//! long the future that asked for it lives: that is what keeps a buffer alive while the
//! kernel may still write into it.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::task::{Poll, Waker};

use io_uring::{IoUring, Probe, opcode, squeue, types};
use mio::{Interest, Registry, Token};

use crate::slab::{Key, Slab};

/// The `user_data` of the operations nobody waits for (a cancel, a close).
const IGNORED: u64 = u64::MAX;

/// Submission queue entries. A turn that queues more keeps the rest in a backlog.
const ENTRIES: u32 = 1024;

/// What the kernel may read or write until an operation completes. Its slot owns it.
#[derive(Debug)]
pub(crate) enum Held {
    /// The buffer of a `read` or a `write`.
    Buffer(Vec<u8>),
    /// The address of a `connect`.
    Address(Box<socket2::SockAddr>),
    /// The duration of a timeout.
    Timespec(Box<types::Timespec>),
}

// ANCHOR: slot
/// One operation between submission and completion.
#[derive(Debug)]
struct Op {
    /// Its own key, the `user_data` of its entry (for the ring's drop, which cancels all).
    key: Key,
    state: State,
    /// What the kernel uses: kept here, not in the future, which may be dropped first.
    held: Held,
}

#[derive(Debug)]
enum State {
    /// Submitted; the waker of the future that waits for it, once polled.
    Waiting(Option<Waker>),
    /// Completed: the result (a byte count, or `-errno`), for the future to collect.
    Done(i32),
    /// Its future was dropped before the completion: the slot keeps the buffer until
    /// the kernel says it is done with it, then frees both.
    Abandoned,
}
// ANCHOR_END: slot

/// An io_uring instance registered with the reactor's mio `Poll`.
pub(crate) struct Ring {
    ring: IoUring,
    ops: Slab<Op>,
    /// Entries that found the submission queue full: they go in the reactor's turn.
    backlog: VecDeque<squeue::Entry>,
    /// Wakers of completions reaped outside the reactor's turn, for its next turn.
    woken: Vec<Waker>,
    /// Submit an `ASYNC_CANCEL` for an operation whose future is dropped. Tests turn it
    /// off to watch the kernel finish an operation nobody waits for.
    pub(crate) cancel_on_drop: bool,
    /// What abandoned operations held, with their result, kept after their completion
    /// for tests to look at.
    #[cfg(test)]
    pub(crate) released: Vec<(i32, Held)>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("fd", &self.ring.as_raw_fd())
            .field("in_flight", &self.ops.len())
            .finish_non_exhaustive()
    }
}

// ANCHOR: new
impl Ring {
    /// Sets up a ring and registers its fd with `registry` under `token`: it is readable
    /// when completions wait. Fails with a message that says why io_uring is unusable.
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Ring> {
        let simulated = simulated_error();
        let setup = match simulated {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            // A completion queue larger than the submission queue: a turn may complete
            // more operations than it submits. (Beyond it, the kernel keeps the overflow.)
            None => IoUring::builder().setup_cqsize(8 * ENTRIES).build(ENTRIES),
        };
        let ring = setup.map_err(|error| unavailable(error, simulated.is_some()))?;
        // What this driver submits: all there since Linux 5.6, like the probe itself.
        let mut probe = Probe::new();
        let needed = [
            ("connect", opcode::Connect::CODE),
            ("recv", opcode::Recv::CODE),
            ("send", opcode::Send::CODE),
            ("close", opcode::Close::CODE),
            ("async_cancel", opcode::AsyncCancel::CODE),
            ("timeout", opcode::Timeout::CODE),
        ];
        let missing = match ring.submitter().register_probe(&mut probe) {
            Ok(()) => needed.iter().find(|(_, code)| !probe.is_supported(*code)),
            Err(_) => needed.first(), // no probe: older than 5.6
        };
        if let Some((name, _)) = missing {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "io_uring is too old on this kernel: it lacks the {name} operation \
                     (the uring driver needs Linux 5.6 or later). Use --driver mio (the default)"
                ),
            ));
        }
        let fd = ring.as_raw_fd();
        registry.register(&mut mio::unix::SourceFd(&fd), token, Interest::READABLE)?;
        Ok(Ring {
            ring,
            ops: Slab::new(),
            backlog: VecDeque::new(),
            woken: Vec::new(),
            cancel_on_drop: true,
            #[cfg(test)]
            released: Vec::new(),
        })
    }
}

/// Explains why `io_uring_setup` failed, and what to do.
fn unavailable(error: io::Error, simulated: bool) -> io::Error {
    let why = shared::io_uring_refusal(&error);
    let simulated = if simulated {
        " [simulated: STAGE4_URING_SIMULATE or uring::simulate_setup_error]"
    } else {
        ""
    };
    io::Error::new(
        error.kind(),
        format!("{why}. Use --driver mio (the default){simulated}"),
    )
}
// ANCHOR_END: new

impl Ring {
    /// Operations in flight (abandoned ones included) and wakes not yet handed over:
    /// while there are any, the reactor must take its turn. (A queued close or cancel
    /// goes with the next turn's submission.)
    pub(crate) fn pending(&self) -> usize {
        self.ops.len() + self.woken.len()
    }

    /// Queues `entry` for the next submission. No system call: if the submission queue
    /// is full, the entry waits in the backlog (a task's poll never pays for a submission
    /// of a thousand connects; the reactor's turn does).
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must stay valid until its completion is reaped: point
    /// into the `Held` of the entry's slot, or be an fd that stays open until then.
    unsafe fn push(&mut self, entry: &squeue::Entry) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(entry.clone());
            return;
        }
        // SAFETY: the caller's promise.
        if unsafe { self.ring.submission().push(entry) }.is_err() {
            self.backlog.push_back(entry.clone());
        }
    }

    // ANCHOR: submit
    /// Hands the kernel every entry queued since the last call: one `io_uring_enter` for
    /// up to 1,024 operations (the loop calls it once a turn).
    pub(crate) fn submit(&mut self) -> io::Result<()> {
        loop {
            let mut queue = self.ring.submission();
            while !queue.is_full()
                && let Some(entry) = self.backlog.pop_front()
            {
                // SAFETY: `push` took it under the same promise; the queue has room.
                let _ = unsafe { queue.push(&entry) };
            }
            let nothing = queue.is_empty() && !queue.cq_overflow();
            drop(queue);
            if nothing {
                return Ok(()); // no system call for an empty queue
            }
            match self.ring.submit() {
                // The kernel took none (short of memory): try again next turn.
                Ok(0) => return Ok(()),
                Ok(_) if self.backlog.is_empty() => return Ok(()),
                Ok(_) => {} // more in the backlog
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // The completion queue is full: reap to make room, then submit again.
                Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {
                    let mut woken = std::mem::take(&mut self.woken);
                    let reaped = self.reap(&mut woken);
                    self.woken = woken;
                    if reaped == 0 {
                        return Err(error);
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Moves every completion out of the queue: the waiting futures' wakers go to
    /// `woken`, and abandoned operations free their slot (and buffer) now that the
    /// kernel is done with them. No system call, unless the queue overflowed.
    pub(crate) fn reap(&mut self, woken: &mut Vec<Waker>) -> usize {
        woken.append(&mut self.woken);
        let mut reaped = 0;
        loop {
            for completion in self.ring.completion() {
                reaped += 1;
                let (user_data, result) = (completion.user_data(), completion.result());
                let released = complete(&mut self.ops, user_data, result, woken);
                #[cfg(test)]
                self.released.extend(released);
                #[cfg(not(test))]
                drop(released);
            }
            // Completions that found the queue full wait in the kernel: an enter
            // (which the crate's `submit` makes with GETEVENTS then) brings them in.
            if !self.ring.submission().cq_overflow() || self.ring.submit().is_err() {
                return reaped;
            }
        }
    }
    // ANCHOR_END: submit
}

// ANCHOR: complete
/// Records one completion; returns what an abandoned operation held, to be freed.
fn complete(
    ops: &mut Slab<Op>,
    user_data: u64,
    result: i32,
    woken: &mut Vec<Waker>,
) -> Option<(i32, Held)> {
    if user_data == IGNORED {
        return None;
    }
    let key = Key::from_usize(user_data as usize);
    let op = ops.get_mut(key)?;
    match &mut op.state {
        State::Waiting(waker) => {
            woken.extend(waker.take());
            op.state = State::Done(result);
            None
        }
        // Only now may the buffer go: the kernel has let go of it.
        State::Abandoned => ops.remove(key).map(|op| (result, op.held)),
        State::Done(_) => None, // one completion per operation: none is multishot here
    }
}
// ANCHOR_END: complete

impl Ring {
    /// Takes a slot for a new operation, holding `held`, and queues the entry that
    /// `entry` builds from it for the next submission. Returns the slot's key, which is
    /// the entry's `user_data`.
    ///
    /// # Safety
    ///
    /// Every pointer in the entry must point into the `Held` given to `entry` (or be an
    /// fd that stays open until the completion): the slot keeps that alive, nothing else.
    pub(crate) unsafe fn start(
        &mut self,
        held: Held,
        entry: impl FnOnce(&mut Held) -> squeue::Entry,
    ) -> Key {
        let key = self.ops.next_key();
        let inserted = self.ops.insert(Op {
            key,
            state: State::Waiting(None),
            held,
        });
        debug_assert_eq!(inserted, key);
        let op = self.ops.get_mut(key).expect("just inserted");
        let entry = entry(&mut op.held).user_data(key.to_usize() as u64);
        // SAFETY: the caller's promise: the entry points into the slot's `held`.
        unsafe { self.push(&entry) };
        key
    }

    /// The outcome of the operation in slot `key` if its completion is in (the slot is
    /// then freed), else `Pending`, with `waker` left in the slot for the reaper.
    pub(crate) fn poll_op(&mut self, key: Key, waker: &Waker) -> Poll<(i32, Held)> {
        let op = self
            .ops
            .get_mut(key)
            .expect("an operation's slot lives until collected");
        match &mut op.state {
            State::Done(result) => {
                let result = *result;
                let op = self.ops.remove(key).expect("found above");
                Poll::Ready((result, op.held))
            }
            State::Waiting(old) => {
                match old {
                    Some(old) if old.will_wake(waker) => {}
                    _ => *old = Some(waker.clone()),
                }
                Poll::Pending
            }
            State::Abandoned => unreachable!("an abandoned operation has no future"),
        }
    }

    // ANCHOR: abandon
    /// The future of `key` is dropped. A completed operation's slot goes now; one still
    /// in flight stays, with its buffer, until its completion: the kernel may be writing
    /// into that buffer right now. A cancel makes that completion come soon.
    pub(crate) fn abandon(&mut self, key: Key) {
        let Some(op) = self.ops.get_mut(key) else {
            return;
        };
        if let State::Done(_) = op.state {
            self.ops.remove(key);
            return;
        }
        op.state = State::Abandoned;
        if self.cancel_on_drop {
            let cancel = opcode::AsyncCancel::new(key.to_usize() as u64)
                .build()
                .user_data(IGNORED);
            // SAFETY: a cancel points at nothing; it names its target by `user_data`.
            unsafe { self.push(&cancel) };
        }
    }
    // ANCHOR_END: abandon

    /// Closes `fd` through the ring, with the next submission: no `close(2)` of its own.
    pub(crate) fn close(&mut self, fd: OwnedFd) {
        let close = opcode::Close::new(types::Fd(fd.as_raw_fd()))
            .build()
            .user_data(IGNORED);
        // SAFETY: the fd stays open until the close runs: ownership goes to the ring.
        unsafe { self.push(&close) };
        let _ = fd.into_raw_fd();
    }

    /// How many operations are in flight (abandoned ones included).
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len()
    }
}

// ANCHOR: drop
impl Drop for Ring {
    /// Buffers may not be freed while the kernel may still write into them, so the ring
    /// cancels whatever is in flight and waits for every completion before it goes.
    fn drop(&mut self) {
        let in_flight = self.ops.drain(); // still owned here: their buffers stay alive
        let cancels = in_flight.iter().map(|op| {
            opcode::AsyncCancel::new(op.key.to_usize() as u64)
                .build()
                .user_data(IGNORED)
        });
        // The backlog first: queued closes must run too.
        let entries: Vec<_> = self.backlog.drain(..).chain(cancels).collect();
        // Raw submissions only: `submit` could reap completions we must count here.
        let mut ok = true;
        for entry in &entries {
            // SAFETY: backlog entries keep `push`'s promise (their slots are in
            // `in_flight`); a cancel points at nothing.
            while ok && unsafe { self.ring.submission().push(entry) }.is_err() {
                ok = matches!(self.ring.submit(), Ok(submitted) if submitted > 0);
            }
        }
        let mut left = in_flight.len();
        while ok && left > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            left -= self
                .ring
                .completion()
                .filter(|completion| completion.user_data() != IGNORED)
                .count()
                .min(left);
        }
        if left > 0 {
            // The kernel may still own some buffers: leaking them is the only safe end.
            std::mem::forget(in_flight);
        } else {
            let _ = self.ring.submit(); // anything still queued, closes included
        }
    }
}
// ANCHOR_END: drop

// ANCHOR: simulate
thread_local! {
    static SIMULATED: Cell<Option<i32>> = const { Cell::new(None) };
}

/// Makes the next rings created on this thread fail as if `io_uring_setup` had returned
/// `errno` (`libc::ENOSYS`: a kernel without io_uring; `libc::EPERM`: io_uring disabled),
/// to test the refusal path on a machine where io_uring works. `None` stops it.
///
/// The environment variable `STAGE4_URING_SIMULATE=ENOSYS` (or `EPERM`) does the same for
/// a whole process, for the command line.
pub fn simulate_setup_error(errno: Option<i32>) {
    SIMULATED.set(errno);
}

/// The error to simulate, if any: the thread's first, then the environment's.
fn simulated_error() -> Option<i32> {
    SIMULATED.get().or_else(
        || match std::env::var("STAGE4_URING_SIMULATE").ok()?.as_str() {
            "ENOSYS" => Some(libc::ENOSYS),
            "EPERM" => Some(libc::EPERM),
            _ => None,
        },
    )
}
// ANCHOR_END: simulate
