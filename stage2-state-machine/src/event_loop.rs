//! Stage 1's event loop, dispatching to state machines instead of closures (article 4.2).
//!
//! Over stage 1, the loop owns one [`Handler`] per token: an object with an explicit state
//! that owns its socket. On an event it calls the handler's `on_event`, and the handler
//! decides from its state what to do. Registering, re-registering and removing work as
//! in stage 1, minus the callback argument: the handler stays the same object for its
//! whole life. Timers are unchanged.
//!
//! Used by `cargo run -p stage2-state-machine`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::time::{Duration, Instant};

use mio::event::{Event, Source};
use mio::{Events, Interest, Poll, Token};

/// The longest one wait in poll may last (see where it is used).
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

// ANCHOR: handler
/// A state machine the loop drives: the loop owns it and tells it every event on its
/// token. It owns the source it was registered for.
pub trait Handler {
    /// The source to register (the handler's socket).
    fn source(&mut self) -> &mut dyn Source;

    /// Called when the source is ready. It gets the loop, so it can re-register or
    /// deregister itself, and the event, whose token names it.
    fn on_event(&mut self, event_loop: &mut EventLoop, event: &Event);
}

/// What runs when a timer expires.
pub type TimerCallback = Box<dyn FnOnce(&mut EventLoop)>;
// ANCHOR_END: handler

/// What is registered for a token, or a mark that it is running right now.
enum Slot {
    Idle(Box<dyn Handler>),
    /// Taken out of the map while it runs, so that it can borrow the loop mutably.
    Running,
}

// ANCHOR: event_loop
/// The loop: a poller, a handler per registered source, and a timer queue.
pub struct EventLoop {
    poll: Poll,
    slots: HashMap<Token, Slot>,
    next_token: usize,
    /// Deadlines keyed by `(when, seq)`, so two timers due at the same instant never
    /// collide and fire in the order they were set.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_callbacks: HashMap<u64, TimerCallback>,
    next_seq: u64,
    stopping: bool,
}
// ANCHOR_END: event_loop

impl EventLoop {
    /// A loop with nothing registered.
    pub fn new() -> io::Result<EventLoop> {
        Ok(EventLoop {
            poll: Poll::new()?,
            slots: HashMap::new(),
            next_token: 0,
            timers: BinaryHeap::new(),
            timer_callbacks: HashMap::new(),
            next_seq: 0,
            stopping: false,
        })
    }

    // ANCHOR: register
    /// Takes ownership of `handler` and calls its `on_event` whenever its source is ready
    /// for `interest`, until it deregisters. Returns the token its events will carry.
    pub fn register(
        &mut self,
        mut handler: impl Handler + 'static,
        interest: Interest,
    ) -> io::Result<Token> {
        let token = Token(self.next_token);
        self.poll
            .registry()
            .register(handler.source(), token, interest)?;
        self.next_token += 1;
        self.slots.insert(token, Slot::Idle(Box::new(handler)));
        Ok(token)
    }

    /// Waits for `interest` on an already registered source, from now on (Python's
    /// `selector.modify`). A handler calls this with its own source.
    pub fn reregister<S>(
        &mut self,
        source: &mut S,
        token: Token,
        interest: Interest,
    ) -> io::Result<()>
    where
        S: Source + ?Sized,
    {
        self.poll.registry().reregister(source, token, interest)
    }

    /// Stops watching `source` and drops its handler (after it returns, if it is the one
    /// running). A handler calls this with its own source.
    pub fn deregister<S>(&mut self, source: &mut S, token: Token) -> io::Result<()>
    where
        S: Source + ?Sized,
    {
        self.slots.remove(&token);
        self.poll.registry().deregister(source)
    }
    // ANCHOR_END: register

    /// Calls `callback` once, `delay` from now. A delay too far for an `Instant` to hold
    /// (`Duration::MAX`, say) is never: the callback is dropped unrun.
    pub fn call_later(&mut self, delay: Duration, callback: impl FnOnce(&mut EventLoop) + 'static) {
        let Some(when) = Instant::now().checked_add(delay) else {
            return;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.timers.push(Reverse((when, seq)));
        self.timer_callbacks.insert(seq, Box::new(callback));
    }

    /// Makes [`run`](EventLoop::run) return once the code running now returns, with
    /// whatever is still registered left in place (Python's `loop.stop()`): how a server that never
    /// runs out of work is stopped.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Registered sources plus pending timers: what `run` still waits for.
    pub fn pending(&self) -> usize {
        self.slots.len() + self.timer_callbacks.len()
    }

    // ANCHOR: run
    /// Runs until no source is registered and no timer is pending, or until
    /// [`stop`](EventLoop::stop) is called.
    ///
    /// Returns an error only if the poller itself fails; an error on a source is for what
    /// is registered for it to handle.
    pub fn run(&mut self) -> io::Result<()> {
        self.run_loop(None)
    }

    /// Like [`run`](EventLoop::run), but gives up at `deadline` (`None`: never).
    /// `Ok(true)` when everything finished; `Ok(false)` when it gave up (or was stopped)
    /// with work still pending, which stays registered.
    pub fn run_until(&mut self, deadline: Option<Instant>) -> io::Result<bool> {
        self.run_loop(deadline)?;
        Ok(self.pending() == 0)
    }

    fn run_loop(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.stopping = false;
        loop {
            // Poll sleeps until the next timer is due, or until a source is ready.
            let mut wait = self.run_due_timers();
            if self.pending() == 0 || self.stopping {
                break;
            }
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                wait = Some(wait.map_or(left, |wait| wait.min(left)));
            }
            // NB: a day at most: macOS's kqueue refuses a wait of more than about three
            // years (EINVAL), and waking early costs one more pass of the loop.
            let wait = wait.map(|wait| wait.min(MAX_WAIT));
            match self.poll.poll(&mut events, wait) {
                Ok(()) => {}
                // A signal arrived while we waited: nothing happened, wait again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                if self.stopping {
                    break;
                }
                self.dispatch(event);
            }
        }
        Ok(())
    }

    /// Hands `event` to what is registered for its token.
    fn dispatch(&mut self, event: &Event) {
        let token = event.token();
        // What ran earlier in this batch may have deregistered this source: its event is
        // stale, so there is nobody to call.
        let Some(slot) = self.slots.get_mut(&token) else {
            return;
        };
        let Slot::Idle(mut handler) = std::mem::replace(slot, Slot::Running) else {
            return;
        };
        handler.on_event(self, event);
        // Put it back unless it deregistered itself.
        if let Some(slot @ Slot::Running) = self.slots.get_mut(&token) {
            *slot = Slot::Idle(handler);
        }
    }
    // ANCHOR_END: run

    /// Fires every timer that is due and returns how long poll may sleep: until the next
    /// timer, or forever (`None`) when there is none.
    fn run_due_timers(&mut self) -> Option<Duration> {
        loop {
            let Reverse((when, seq)) = *self.timers.peek()?;
            let now = Instant::now();
            if when > now {
                return Some(when - now);
            }
            self.timers.pop();
            if let Some(callback) = self.timer_callbacks.remove(&seq) {
                callback(self);
            }
        }
    }
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("registered", &self.slots.len())
            .field("timers", &self.timer_callbacks.len())
            .finish()
    }
}
