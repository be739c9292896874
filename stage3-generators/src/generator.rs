//! The first player: a generator, built as a stackful coroutine on stable Rust.
//!
//! Python's `x = yield value` and `gen.send(x)` become [`Yielder::suspend`] and
//! [`Generator::resume`]. Stable Rust has no generators, so each one gets a stack of its
//! own (from `stack/`) and a context switch (from `switch/`) moves between the caller's
//! stack and the generator's: `resume` switches in, `suspend` switches back out.
//!
//! ```
//! # #[cfg(not(miri))] { // Miri cannot run the context switch's inline assembly.
//! use stage3_generators::generator::{Generator, GeneratorState};
//!
//! // Sums what it is sent, yielding the running total, until it is sent 0.
//! let mut running_sum = Generator::new(|yielder, mut x: u64| {
//!     let mut total = 0;
//!     while x != 0 {
//!         total += x;
//!         x = yielder.suspend(total); // Python: x = yield total
//!     }
//!     format!("done at {total}")
//! });
//! assert_eq!(running_sum.resume(5), GeneratorState::Yielded(5)); // Python: gen.send(5)
//! assert_eq!(running_sum.resume(10), GeneratorState::Yielded(15));
//! assert_eq!(running_sum.resume(0), GeneratorState::Complete("done at 15".to_string()));
//! # }
//! ```
//!
//! Three rules keep it sound, and the compiler enforces the first two:
//!
//! - A generator is not `Send`. Its stack may hold `Rc`s and references to thread-locals
//!   across a `suspend`, invisible to the type system, so it stays on its thread:
//!
//!   ```compile_fail,E0277
//!   use stage3_generators::generator::Generator;
//!   let generator: Generator<(), (), ()> = Generator::new(|_, ()| ());
//!   std::thread::spawn(move || drop(generator)); // error: cannot be sent between threads
//!   ```
//!
//! - The body is `'static`, and the [`Yielder`] is only lent to it for the duration of
//!   the call: it cannot escape, so `suspend` only ever runs on the generator's own stack.
//!
//!   ```compile_fail
//!   use stage3_generators::generator::{Generator, Yielder};
//!   // error: lifetime may not live long enough (the yielder would outlive the body)
//!   let generator = Generator::new(|yielder: &Yielder<(), ()>, ()| yielder);
//!   ```
//!
//!   Nor can the body borrow from its creator, which may be long gone by the time a
//!   suspended generator resumes:
//!
//!   ```compile_fail
//!   use stage3_generators::generator::{Generator, Yielder};
//!   let name = String::from("local");
//!   // error: `name` does not live long enough (the body must be 'static)
//!   let generator = Generator::new(|_: &Yielder<(), ()>, ()| name.len());
//!   ```
//!
//! - No unwind ever crosses a switch: the body runs inside `catch_unwind` on its own
//!   stack, and `resume` re-raises a panic on the caller's stack.
//!
//! And two that no compiler can check, kept at run time instead: a body that catches the
//! unwind that drops it and suspends again keeps its stack for good (leaked, with a
//! warning: its frames may still be borrowed), and `suspend` aborts the process if it is
//! called while its own stack unwinds.
//!
//! `cargo run -p stage3-generators --example running_sum`, and its tests:
//! `cargo test -p stage3-generators --test generator --test drop`.

use std::any::Any;
use std::cell::Cell;
use std::io::Write;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::{self, NonNull};

use crate::stack::{DEFAULT_STACK_SIZE, Stack};
use crate::switch::{self, StackPointer};

/// What [`Generator::resume`] returns: the generator suspended with a value, or finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorState<Y, R> {
    /// The body called `suspend(value)` (Python: `yield value`).
    Yielded(Y),
    /// The body returned (Python: `StopIteration(value)`).
    Complete(R),
}

// ANCHOR: yielder
/// Lent to a generator's body: its way to suspend and to receive what `resume` sends.
///
/// It lives at a fixed address, the top of the generator's stack; both stacks reach it while the other
/// one is suspended, so every field is a `Cell` and at most one side runs at a time.
pub struct Yielder<I, Y> {
    /// Where `suspend` switches to: the stack that called `resume`.
    caller: Cell<StackPointer>,
    /// Where `resume` switches to: the generator's own stack; null once the body has
    /// finished.
    coroutine: Cell<StackPointer>,
    /// Set by `Drop`: the next `suspend` unwinds instead of returning.
    cancelling: Cell<bool>,
    /// What `suspend` takes and gives. The values themselves cross each switch in a
    /// register (see `encode`), not through this struct.
    _values: PhantomData<*mut (I, Y)>,
}

impl<I, Y> Yielder<I, Y> {
    /// Suspends the generator, handing `value` to `resume`; returns what the next
    /// `resume` sends. Python: `x = yield value`.
    ///
    /// Works from any depth of plain function calls inside the body: a stackful
    /// coroutine suspends its whole stack (what Python needs `yield from` for).
    ///
    /// # Aborts
    ///
    /// When called while this generator's own stack is unwinding (from a destructor,
    /// during a panic or while the generator is dropped): that unwind could never finish.
    /// `resume` finds out as soon as the switch brings it back, and aborts there.
    pub fn suspend(&self, value: Y) -> I {
        let mut value = ManuallyDrop::new(value);
        // The yielder never leaves the body (lent by reference to a 'static closure, not
        // `Sync`), so we run on the generator's stack. `resume` decodes `value` before
        // anything else runs (see `encode`).
        // SAFETY: `caller` is the stack pointer that `resume` just saved, alive because
        // `resume` waits for us to switch back.
        let message = unsafe {
            switch::switch(
                self.coroutine.as_ptr(),
                self.caller.get(),
                encode(&mut value),
            )
        };
        if self.cancelling.get() {
            // The generator is being dropped: unwind this stack so its locals drop.
            panic::resume_unwind(Box::new(Cancelled));
        }
        // SAFETY: `resume` encoded an `I` and waits, switched out, until we switch back.
        unsafe { decode(message) }
    }
}
// ANCHOR_END: yielder

// ANCHOR: message
/// Encodes `value` for a switch, which carries one word in a register: the value itself
/// when it fits in a word, its address otherwise. Whoever decodes the word owns the value.
///
/// NB: corosensei does the same. A bigger value stays where it is, on the stack of its
/// sender, which is switched out until the receiver has decoded (moved) it.
fn encode<T>(value: &mut ManuallyDrop<T>) -> usize {
    if size_of::<T>() <= size_of::<usize>() {
        let mut word = 0usize;
        // SAFETY: `T` fits in `word`; unaligned, because `T` may need more alignment. The
        // value is moved out once: `value` is never dropped (`ManuallyDrop`) nor read again.
        unsafe { ptr::write_unaligned((&raw mut word).cast::<T>(), ManuallyDrop::take(value)) };
        word
    } else {
        ptr::from_mut(value).expose_provenance()
    }
}

/// Takes the value out of a word made by [`encode`].
///
/// # Safety
///
/// `word` must come from `encode::<T>`, decoded once, and for a value bigger than a word,
/// while its sender is still switched out.
unsafe fn decode<T>(word: usize) -> T {
    if size_of::<T>() <= size_of::<usize>() {
        // SAFETY: `encode` wrote a `T` at the start of this word.
        unsafe { ptr::read_unaligned((&raw const word).cast::<T>()) }
    } else {
        // SAFETY: the address of the sender's `ManuallyDrop<T>`, read once (a move).
        unsafe { ptr::with_exposed_provenance::<T>(word).read() }
    }
}
// ANCHOR_END: message

/// The panic payload that unwinds a suspended generator when it is dropped.
struct Cancelled;

#[cold]
fn suspended_while_unwinding() -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "fatal: a generator called `suspend` while its stack was unwinding (from a \
         destructor, during a panic or while the generator was dropped): that unwind \
         could never finish and its stack could never be freed; aborting"
    );
    std::process::abort()
}

/// How the body ended.
enum Outcome<R> {
    Returned(R),
    Panicked(Box<dyn Any + Send>),
    Cancelled,
}

/// What both stacks share, at the top of the generator's own stack, with the body just
/// below it: nothing on the heap.
struct Inner<I, Y, R> {
    yielder: Yielder<I, Y>,
    outcome: Cell<Option<Outcome<R>>>,
}

/// A body bigger than this goes to the heap, and only a pointer to it onto the stack: it
/// would take too much of a small stack.
const MAX_BODY_ON_STACK: usize = 1024;

/// The place for a `T` just below `above`, aligned for it: how [`Generator::on`] lays out
/// `Inner` below the top of the stack, and the body below `Inner`.
fn place_below<T>(above: *mut u8) -> *mut T {
    let at = (above.addr() - size_of::<T>()) & !(align_of::<T>() - 1);
    above.with_addr(at).cast()
}

/// Where the body of type `F` goes: just below `inner`.
fn body_place<I, Y, R, F>(inner: *mut Inner<I, Y, R>) -> *mut F {
    place_below(inner.cast())
}

// ANCHOR: generator
/// A stackful coroutine that takes `I` on each resume, yields `Y`, and returns `R`.
pub struct Generator<I, Y, R> {
    /// At the top of `stack`, until the body has finished: both stacks reach it by this
    /// raw pointer, so only shared references to it are ever made.
    inner: NonNull<Inner<I, Y, R>>,
    /// `None` once the body has finished and the stack went back to the pool.
    stack: Option<Stack>,
    /// Not `Send` (see the module docs).
    _not_send: PhantomData<*mut ()>,
}
// ANCHOR_END: generator

impl<I: 'static, Y: 'static, R: 'static> Generator<I, Y, R> {
    /// A generator that will run `body(yielder, first_input)` on its own stack at the
    /// first `resume`. Panics if no stack can be had; see [`Generator::try_new`].
    pub fn new<F>(body: F) -> Generator<I, Y, R>
    where
        F: FnOnce(&Yielder<I, Y>, I) -> R + 'static,
    {
        Generator::try_new(body).unwrap_or_else(|e| panic!("no stack for a generator: {e}"))
    }

    /// Like [`Generator::new`], with an error when the OS has no memory or mappings left
    /// for one more stack.
    pub fn try_new<F>(body: F) -> std::io::Result<Generator<I, Y, R>>
    where
        F: FnOnce(&Yielder<I, Y>, I) -> R + 'static,
    {
        Generator::with_stack_size(DEFAULT_STACK_SIZE, body)
    }

    /// Like [`Generator::try_new`], on a stack of `stack_size` usable bytes (rounded up
    /// to whole pages) instead of [`DEFAULT_STACK_SIZE`]. Sizes outside
    /// [`MIN_STACK_SIZE`](crate::stack::MIN_STACK_SIZE) to
    /// [`MAX_STACK_SIZE`](crate::stack::MAX_STACK_SIZE) are an `InvalidInput` error.
    pub fn with_stack_size<F>(stack_size: usize, body: F) -> std::io::Result<Generator<I, Y, R>>
    where
        F: FnOnce(&Yielder<I, Y>, I) -> R + 'static,
    {
        let stack = Stack::take_sized(stack_size)?;
        if size_of::<F>() <= MAX_BODY_ON_STACK && align_of::<F>() <= 64 {
            Ok(Generator::on(stack, body))
        } else {
            let body = Box::new(body);
            Ok(Generator::on(
                stack,
                move |yielder: &Yielder<I, Y>, input| body(yielder, input),
            ))
        }
    }

    /// Puts `Inner` and `body` at the top of `stack`, and below them the frame that
    /// starts `entry` at the first switch.
    // NB: corosensei does the same: a generator costs no allocation beyond its stack,
    // whose top page the first switch touches anyway.
    fn on<F>(stack: Stack, body: F) -> Generator<I, Y, R>
    where
        F: FnOnce(&Yielder<I, Y>, I) -> R + 'static,
    {
        let inner = place_below::<Inner<I, Y, R>>(stack.top());
        let body_at = body_place::<I, Y, R, F>(inner);
        let frame_top = body_at.cast::<u8>().wrapping_sub(body_at as usize % 16);
        // `inner` and `body_at` lie below the top, each aligned for its type and apart
        // from the other, and `frame_top` below both, 16-byte aligned: together a little
        // over 1 KiB at most, against 16 KiB or more of stack. `entry` never returns.
        // SAFETY: the stack is fresh from the pool and used by nothing else, and the three
        // places above are inside it.
        let sp = unsafe {
            inner.write(Inner {
                yielder: Yielder {
                    caller: Cell::new(ptr::null_mut()),
                    coroutine: Cell::new(ptr::null_mut()),
                    cancelling: Cell::new(false),
                    _values: PhantomData,
                },
                outcome: Cell::new(None),
            });
            body_at.write(body);
            switch::init(frame_top, entry::<I, Y, R, F>, inner.cast())
        };
        // SAFETY: just written; only shared references to it are ever made.
        unsafe { &*inner }.yielder.coroutine.set(sp);
        Generator {
            inner: NonNull::new(inner).expect("a stack is never at address 0"),
            stack: Some(stack),
            _not_send: PhantomData,
        }
    }
}

// ANCHOR: resume
impl<I, Y, R> Generator<I, Y, R> {
    /// Runs the body until it suspends or returns, sending it `input`: the first
    /// `resume` passes `input` as the body's argument, later ones as the return value of
    /// `suspend`. Python: `gen.send(input)`.
    ///
    /// If the body panics, the panic continues from here, on the caller's stack.
    ///
    /// # Panics
    ///
    /// When the generator has already completed (Python raises `StopIteration` again).
    pub fn resume(&mut self, input: I) -> GeneratorState<Y, R> {
        assert!(
            !self.is_complete(),
            "resumed a generator that has completed"
        );
        // The body decodes (moves) `input` before it switches back: see `encode`.
        let mut input = ManuallyDrop::new(input);
        let message = self.switch_in(encode(&mut input));
        // A suspended body sent its value; a finished one left its outcome instead, and
        // no stack to come back to.
        if !self.yielder().coroutine.get().is_null() {
            // SAFETY: `suspend` encoded a `Y` and stays switched out until we switch in.
            return GeneratorState::Yielded(unsafe { decode(message) });
        }
        self.finished()
    }

    /// The body has returned or panicked: takes its outcome and gives the stack back.
    // NB: out of line, because it runs once per generator: the `resume` that remains is
    // small enough for the compiler to inline where it is called.
    #[cold]
    #[inline(never)]
    fn finished(&mut self) -> GeneratorState<Y, R> {
        let outcome = self.inner().outcome.take();
        self.finish();
        match outcome.expect("a body that did not suspend has finished") {
            Outcome::Returned(value) => GeneratorState::Complete(value),
            Outcome::Panicked(payload) => panic::resume_unwind(payload),
            Outcome::Cancelled => unreachable!("only Drop cancels"),
        }
    }

    /// Whether the body has returned (or panicked).
    pub fn is_complete(&self) -> bool {
        self.stack.is_none()
    }

    /// Switches to the generator's stack, sending it `message`, until it suspends or
    /// finishes; returns what it sent back (nothing to decode once it has finished).
    fn switch_in(&mut self, message: usize) -> usize {
        let yielder = self.yielder();
        // Read on this side only, so that `suspend` pays nothing for it (see below).
        let was_panicking = std::thread::panicking();
        let (save, to) = (yielder.caller.as_ptr(), yielder.coroutine.get());
        // `to` was saved by `suspend` (or made by `init`) on this generator's stack.
        // SAFETY: that stack is alive and not running: we hold `&mut self`, and the body
        // only runs between this switch and the one that brings us back.
        let received = unsafe { switch::switch(save, to, message) };
        // NB: Python lets a generator yield in a `finally` while an exception passes. Rust
        // counts panics per thread, not per stack: a body that suspended in the middle of
        // its own unwind left `thread::panicking()` true for us, and no way to ever finish
        // that unwind. (If we were unwinding already, the count cannot tell; that body's
        // suspend is allowed, as one from a destructor that runs during our unwind is.)
        if std::thread::panicking() && !was_panicking {
            suspended_while_unwinding();
        }
        received
    }
    // ANCHOR_END: resume

    /// Drops `inner` and gives the stack it lives on back to the pool.
    fn finish(&mut self) {
        if let Some(stack) = self.stack.take() {
            // SAFETY: `inner` lives at the top of this stack, whose body has finished:
            // nothing reads it any more.
            unsafe { ptr::drop_in_place(self.inner.as_ptr()) };
            stack.give_back();
        }
    }

    fn inner(&self) -> &Inner<I, Y, R> {
        // SAFETY: `inner` is valid while the stack it lives on is ours (every caller
        // checks that the generator has not finished), and only shared references to it
        // are ever made (its fields are cells).
        unsafe { self.inner.as_ref() }
    }

    fn yielder(&self) -> &Yielder<I, Y> {
        &self.inner().yielder
    }
}

// ANCHOR: entry
/// The bottom of every generator stack: runs the body inside `catch_unwind`, records how
/// it ended, and switches back for the last time.
extern "C" fn entry<I, Y, R, F>(inner: *mut u8, message: usize) -> !
where
    F: FnOnce(&Yielder<I, Y>, I) -> R,
{
    let inner = inner.cast::<Inner<I, Y, R>>();
    // SAFETY: `on` moved the body to its place below `inner`, and this is its one move
    // out. Both stay valid: the generator waits in `resume` or `drop` until this stack
    // switches back, and only then frees them.
    let (inner, body) = unsafe { (&*inner, body_place::<I, Y, R, F>(inner).read()) };
    let outcome = if inner.yielder.cancelling.get() {
        // Dropped before its first `resume`: the body is dropped unrun.
        match panic::catch_unwind(AssertUnwindSafe(|| drop(body))) {
            Ok(()) => Outcome::Cancelled,
            Err(payload) => Outcome::Panicked(payload),
        }
    } else {
        // SAFETY: the first `resume` encoded an `I` and waits for us to switch back.
        let input = unsafe { decode(message) };
        // No unwind may cross the switch: catch it here, re-raise it in `resume`.
        match panic::catch_unwind(AssertUnwindSafe(|| body(&inner.yielder, input))) {
            Ok(value) => Outcome::Returned(value),
            Err(payload) if payload.is::<Cancelled>() => Outcome::Cancelled,
            Err(payload) => Outcome::Panicked(payload),
        }
    };
    inner.outcome.set(Some(outcome));
    inner.yielder.coroutine.set(ptr::null_mut()); // never to be switched to again
    // Nothing with a destructor is left on this stack: it is abandoned, not unwound.
    let mut abandoned: StackPointer = ptr::null_mut();
    // SAFETY: `caller` is the stack pointer saved by the `resume` (or `drop`) that is
    // waiting for us; this stack is never switched to again.
    unsafe { switch::switch(&mut abandoned, inner.yielder.caller.get(), 0) };
    unreachable!("a finished generator was resumed")
}
// ANCHOR_END: entry

// ANCHOR: drop
impl<I, Y, R> Drop for Generator<I, Y, R> {
    /// Dropping a suspended generator unwinds its stack, so everything it holds (sockets,
    /// buffers) is dropped too. Python: `gen.close()`.
    fn drop(&mut self) {
        let mut outcome = None;
        if !self.is_complete() {
            // Suspended, or never started (then `entry` drops the body unrun).
            self.yielder().cancelling.set(true);
            self.switch_in(0); // nothing to decode: `suspend` unwinds
            outcome = self.inner().outcome.take();
            if outcome.is_none() {
                // The body caught the unwind and suspended again: its frames are alive.
                return self.leak();
            }
        }
        self.finish();
        // The body may have caught the unwind and panicked anyway; pass that on unless we
        // are unwinding already (a second panic would abort).
        if let Some(Outcome::Panicked(payload)) = outcome
            && !std::thread::panicking()
        {
            panic::resume_unwind(payload);
        }
    }
}

impl<I, Y, R> Generator<I, Y, R> {
    /// Gives up on a body that suspended while being cancelled (Python: `RuntimeError:
    /// generator ignored GeneratorExit`). Its frames may still be borrowed (by a scoped
    /// thread, say), so its stack and `inner` are never freed nor reused.
    #[cold]
    fn leak(&mut self) {
        let stack = self
            .stack
            .take()
            .expect("a suspended generator has a stack");
        let _ = writeln!(
            std::io::stderr(),
            "warning: a generator caught the unwind that drops it and suspended again \
             (Python: generator ignored GeneratorExit); its stack ({} KiB below {:#x}) \
             and its state are leaked, never reused",
            stack.size() / 1024,
            stack.top() as usize
        );
        // Keeps the stack's chunk mapped for good; `inner` is simply never freed.
        std::mem::forget(stack);
    }
}
// ANCHOR_END: drop
