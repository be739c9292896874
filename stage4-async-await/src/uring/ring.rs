//! The ring: io_uring's submission and completion queues, and a slab of the operations
//! the kernel has not answered yet.
//!
//! An operation's slot is its `user_data`: the completion names it, and the reaper finds
//! the waker (and the buffer) there. A slot lives from submission to completion, however
//! long the future that asked for it lives: that is what keeps a buffer alive while the
//! kernel may still write into it.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::task::{Poll, Waker};
use std::time::Duration;

use io_uring::{IoUring, opcode, squeue, types};
use mio::{Interest, Registry, Token};

use crate::slab::{Key, Slab};

mod accept;
mod setup;

use accept::{Accepts, MAX_WAITING_ACCEPTS, close_accepted};
use setup::{SETUP, build};
use shared::uring::kernel_at_least;

/// The `user_data` of the operations nobody waits for (a cancel, a close).
const IGNORED: u64 = u64::MAX;

/// How long a wait may hold out for more completions than the first (see [`Ring::wait`]).
const BATCH_WAIT_MICROS: u32 = 25;

/// The `user_data` of the poll on the reactor's epoll fd (see [`Ring::wait`]).
const EPOLL: u64 = u64::MAX - 1;

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
    /// Nothing: the operation points at no memory of ours (an accept).
    Nothing,
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
    /// A multishot accept: one submission, a completion per connection.
    Accepting(Accepts),
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
    /// The kernel accepts many connections per submission (Linux 5.19 and later); if
    /// not, a listener submits one accept per connection.
    pub(crate) multishot_accept: bool,
    /// The loop blocks here, in `io_uring_enter` (see [`Ring::wait`]), rather than in
    /// `epoll_wait` with the ring's fd among epoll's: a wait with a timeout needs Linux
    /// 5.11, a multishot poll of the epoll fd 5.13.
    pub(crate) waits: bool,
    /// The multishot poll on the epoll fd is armed.
    epoll_armed: bool,
    /// It completed since the last look: epoll has events.
    epoll_ready: bool,
    /// How many completions the last reap found: what the next wait holds out for.
    batch: usize,
    /// Slots of multishot accepts, which complete only when a client comes: a wait
    /// does not hold out for them.
    accepting: usize,
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
        let ring = SETUP.ring(build)?;
        let waits = ring.params().is_feature_ext_arg() && kernel_at_least(5, 13);
        if !waits {
            // The old way: the loop waits in epoll, and the ring's fd is readable there
            // when completions wait.
            let fd = ring.as_raw_fd();
            registry.register(&mut mio::unix::SourceFd(&fd), token, Interest::READABLE)?;
        }
        Ok(Ring {
            ring,
            ops: Slab::new(),
            backlog: VecDeque::new(),
            woken: Vec::new(),
            cancel_on_drop: true,
            multishot_accept: kernel_at_least(5, 19),
            waits,
            epoll_armed: false,
            epoll_ready: false,
            batch: 1,
            accepting: 0,
            #[cfg(test)]
            released: Vec::new(),
        })
    }
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
            // (With deferred task work, completions are only posted by an enter: the
            // kernel raises `taskrun` when some wait to be.)
            let nothing = queue.is_empty() && !queue.cq_overflow() && !queue.taskrun();
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

    // ANCHOR: ring_wait
    /// Submits what is queued and waits, in the same `io_uring_enter`, until a
    /// completion comes or `timeout` passes (`None`: no limit). Before, it makes sure a
    /// multishot poll watches `epoll` (the reactor's epoll fd): its completion says that
    /// epoll has events, which [`Ring::take_epoll_ready`] then tells.
    pub(crate) fn wait(&mut self, epoll: i32, timeout: Option<Duration>) -> io::Result<()> {
        if !self.epoll_armed {
            let poll = opcode::PollAdd::new(types::Fd(epoll), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(EPOLL);
            // SAFETY: a poll points at no memory; the epoll fd outlives the ring (the
            // reactor owns both, and drops the ring first).
            unsafe { self.push(&poll) };
            self.epoll_armed = true;
        }
        if !self.backlog.is_empty() {
            self.submit()?; // what does not fit in one enter
        }
        // Fewer wake-ups: hold out for as many completions as the last wait brought
        // (many connections answer in waves), but for no longer than `BATCH_WAIT_MICROS`;
        // after that, one is enough (Linux 6.12; before, one is always enough).
        let (want, batch_wait) = match self.ring.params().is_feature_min_timeout() {
            true => {
                let in_flight = self.ops.len().saturating_sub(self.accepting);
                let want = self.batch.clamp(1, in_flight.max(1));
                // (For one, no holding out: a minimum wait alone costs the kernel a timer.)
                (want, if want > 1 { BATCH_WAIT_MICROS } else { 0 })
            }
            false => (1, 0),
        };
        // The kernel's seconds are signed: a longer wait is "forever" anyway.
        let timespec = timeout.map(|timeout| {
            types::Timespec::new()
                .sec(timeout.as_secs().min(i64::MAX as u64))
                .nsec(timeout.subsec_nanos())
        });
        let args = types::SubmitArgs::new().min_wait_usec(batch_wait);
        let submitter = self.ring.submitter();
        let result = match &timespec {
            Some(timespec) => submitter.submit_with_args(want, &args.timespec(timespec)),
            None => submitter.submit_with_args(want, &args),
        };
        match result {
            Ok(_) => Ok(()),
            // The timeout passed, or a signal came: the loop looks around and comes back.
            Err(error) if error.raw_os_error() == Some(libc::ETIME) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(()),
            // The completion queue is full: the reaper makes room, the next turn waits.
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Whether epoll has had events since the last call (the poll on its fd completed).
    pub(crate) fn take_epoll_ready(&mut self) -> bool {
        std::mem::take(&mut self.epoll_ready)
    }
    // ANCHOR_END: ring_wait

    /// Moves every completion out of the queue: the waiting futures' wakers go to
    /// `woken`, and abandoned operations free their slot (and buffer) now that the
    /// kernel is done with them. No system call, unless the queue overflowed.
    pub(crate) fn reap(&mut self, woken: &mut Vec<Waker>) -> usize {
        woken.append(&mut self.woken);
        let mut reaped = 0;
        loop {
            let mut pause = Vec::new();
            for completion in self.ring.completion() {
                reaped += 1;
                let (user_data, result) = (completion.user_data(), completion.result());
                let more = io_uring::cqueue::more(completion.flags());
                if user_data == EPOLL {
                    self.epoll_ready = true;
                    self.epoll_armed &= more; // ended: armed again at the next wait
                    continue;
                }
                match complete(&mut self.ops, user_data, result, more, woken) {
                    Reaped::Nothing => {}
                    Reaped::Released(released) => {
                        #[cfg(test)]
                        self.released.push(released);
                        #[cfg(not(test))]
                        drop(released);
                    }
                    Reaped::Pause(key) => pause.push(key),
                    Reaped::AcceptEnded => self.accepting -= 1,
                }
            }
            for key in pause {
                self.cancel(key);
            }
            if reaped > 0 {
                self.batch = reaped;
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
/// What a completion leaves for the ring to do.
enum Reaped {
    Nothing,
    /// An abandoned operation's result, and what it held, to be freed.
    Released((i32, Held)),
    /// A multishot accept has more waiting than the listener takes: cancel it.
    Pause(Key),
    /// An abandoned multishot accept has ended; its slot is gone.
    AcceptEnded,
}

/// Records one completion (`more`: a multishot operation will complete again).
fn complete(
    ops: &mut Slab<Op>,
    user_data: u64,
    result: i32,
    more: bool,
    woken: &mut Vec<Waker>,
) -> Reaped {
    if user_data == IGNORED {
        return Reaped::Nothing;
    }
    let key = Key::from_usize(user_data as usize);
    let Some(op) = ops.get_mut(key) else {
        return Reaped::Nothing;
    };
    match &mut op.state {
        State::Waiting(waker) => {
            woken.extend(waker.take());
            op.state = State::Done(result);
            Reaped::Nothing
        }
        // Only now may the buffer go: the kernel has let go of it.
        State::Abandoned => match ops.remove(key) {
            Some(op) => Reaped::Released((result, op.held)),
            None => Reaped::Nothing,
        },
        State::Done(_) => Reaped::Nothing, // one completion per single-shot operation
        State::Accepting(accepts) => {
            if accepts.abandoned {
                close_accepted(result);
                if !more {
                    ops.remove(key);
                    return Reaped::AcceptEnded;
                }
                return Reaped::Nothing;
            }
            accepts.results.push_back(result);
            accepts.ended = !more;
            woken.extend(accepts.waker.take());
            if more && !accepts.paused && accepts.results.len() >= MAX_WAITING_ACCEPTS {
                accepts.paused = true;
                return Reaped::Pause(key);
            }
            Reaped::Nothing
        }
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
            State::Accepting(_) => unreachable!("a multishot accept has no OpFuture"),
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
        match &mut op.state {
            State::Done(_) => {
                self.ops.remove(key);
                return;
            }
            State::Accepting(accepts) => {
                // Connections accepted for nobody: close them, and what still comes.
                accepts.results.drain(..).for_each(close_accepted);
                accepts.waker = None;
                if accepts.ended {
                    self.ops.remove(key);
                    self.accepting -= 1;
                    return;
                }
                accepts.abandoned = true;
            }
            _ => op.state = State::Abandoned,
        }
        self.cancel(key);
    }
    // ANCHOR_END: abandon

    // ANCHOR: orphan
    /// The future of `key` is dropped, but its stream will take the operation over: the
    /// slot stays, done or not, until a new future collects it (or the stream, dropped,
    /// abandons it). `cancel` asks the kernel to stop it (a read: whatever it read by
    /// then still comes back); without, it runs to its end (a write: its bytes go out).
    pub(crate) fn orphan(&mut self, key: Key, cancel: bool) {
        let Some(op) = self.ops.get_mut(key) else {
            return;
        };
        if let State::Waiting(waker) = &mut op.state {
            *waker = None; // nobody to wake until a future takes it over
            if cancel {
                self.cancel(key);
            }
        }
    }
    // ANCHOR_END: orphan

    /// Asks the kernel to stop the operation in slot `key` soon (with the next
    /// submission); its completion still comes, with what it did by then.
    fn cancel(&mut self, key: Key) {
        if self.cancel_on_drop {
            let cancel = opcode::AsyncCancel::new(key.to_usize() as u64)
                .build()
                .user_data(IGNORED);
            // SAFETY: a cancel points at nothing; it names its target by `user_data`.
            unsafe { self.push(&cancel) };
        }
    }

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

    /// Whether the operation in slot `key` has completed (its result waits there).
    #[cfg(test)]
    pub(crate) fn is_done(&mut self, key: Key) -> bool {
        self.ops
            .get_mut(key)
            .is_some_and(|op| matches!(op.state, State::Done(_)))
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
        // Wait for the last completion of every operation not done yet (a completed one
        // kept for its stream will not complete again).
        let mut left = in_flight
            .iter()
            .filter(|op| match &op.state {
                State::Done(_) => false,
                State::Accepting(accepts) => !accepts.ended,
                _ => true,
            })
            .count();
        let accepting: Vec<u64> = in_flight
            .iter()
            .filter(|op| matches!(op.state, State::Accepting(_)))
            .map(|op| op.key.to_usize() as u64)
            .collect();
        while ok && left > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            for completion in self.ring.completion() {
                let user_data = completion.user_data();
                if user_data == IGNORED || user_data == EPOLL {
                    continue; // not an operation of the slab
                }
                if accepting.contains(&user_data) {
                    close_accepted(completion.result());
                }
                if !io_uring::cqueue::more(completion.flags()) {
                    left = left.saturating_sub(1);
                }
            }
        }
        // Connections accepted before the end that nobody took.
        for op in &in_flight {
            if let State::Accepting(accepts) = &op.state {
                accepts.results.iter().copied().for_each(close_accepted);
            }
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
