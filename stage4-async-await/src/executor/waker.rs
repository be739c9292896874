//! The wakers: how a task's `Waker` finds its way back to the ready queue, from the loop's
//! own thread (no lock, no atomic operation) or from any other (through a mutex and the
//! loop's `mio::Waker`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{RawWaker, RawWakerVTable, Waker};

use super::CURRENT;
use crate::slab::Key;
use crate::trace::{Step, Trace};

// ANCHOR: ready_queue
/// A waker is two words: a vtable, and a data word that std hands back to the vtable's
/// functions. Ours puts no pointer there, only numbers: which loop (16 bits), and the
/// task's key in that loop's slab (its index, and the low 16 bits of its generation).
/// Nothing to count or free, so cloning or dropping a waker costs nothing, and a spawn
/// allocates no waker.
pub(super) fn task_waker(loop_slot: u16, key: Key) -> Waker {
    let word = waker_word(loop_slot, key);
    let data = std::ptr::without_provenance(word as usize);
    // SAFETY: the vtable's functions never dereference `data` (it is a number, not a
    // pointer), may be called from any thread (a wake from elsewhere goes through a
    // mutex), and clone and drop own nothing, so every contract of `RawWaker` holds.
    unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) }
}

/// The data word of the waker of task `key` on loop `loop_slot`.
pub(super) fn waker_word(loop_slot: u16, key: Key) -> u64 {
    (u64::from(loop_slot) << 48) | (key.to_u64() & KEY_BITS)
}

/// Which loop a waker word names.
pub(super) fn loop_slot(word: u64) -> u16 {
    (word >> 48) as u16
}

/// The bits of a waker's word that hold the key: index, and 16 bits of generation.
pub(super) const KEY_BITS: u64 = (1 << 48) - 1;

// A waker's word must hold 64 bits.
const _: () = assert!(
    usize::BITS == 64,
    "stage 4's wakers pack a loop and a task key into 64 bits: a 64-bit target is needed"
);

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_waker, wake, wake, drop_waker);

fn clone_waker(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn drop_waker(_: *const ()) {}

/// Both `wake` and `wake_by_ref`: queue the task, once.
fn wake(data: *const ()) {
    let word = data.addr() as u64;
    let loop_slot = loop_slot(word);
    // On the loop's own thread (a timer, a socket, a task waking another): straight
    // into its ready queue, no lock and no atomic operation.
    let local = CURRENT.try_with(|current| match current.try_borrow().as_deref() {
        Ok(Some(inner)) if inner.slot.get() == Some(loop_slot) => inner.wake_local(word),
        _ => false,
    });
    if local != Ok(true) {
        // From another thread, or after the loop stopped: through the registry.
        let loops = LOOPS.lock().unwrap_or_else(PoisonError::into_inner);
        let shared = loops.get(usize::from(loop_slot)).cloned().flatten();
        drop(loops);
        if let Some(shared) = shared {
            shared.push(word);
        }
    }
}

/// The running loops, by slot, for wakes from other threads. A slot is reused once its
/// loop has stopped: a waker that outlived its loop then wakes a task of the next one,
/// which is a spurious wake-up, allowed by `Future`'s contract.
pub(super) static LOOPS: Mutex<Vec<Option<Arc<Shared>>>> = Mutex::new(Vec::new());

/// What wakers on other threads share with the loop: their wakes, and the `mio::Waker`
/// that interrupts the loop when it sleeps in `epoll_wait`.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) remote: Mutex<RemoteQueue>,
    pub(super) waker: mio::Waker,
    /// `--trace`: wakes from other threads say so.
    pub(super) trace: Trace,
}

#[derive(Debug, Default)]
pub(super) struct RemoteQueue {
    /// Waker words; the loop queues their tasks at its next round.
    pub(super) wakes: Vec<u64>,
    /// The same words, so that a task woken again and again from another thread while
    /// the loop is busy takes one place in `wakes`, not one per wake.
    pub(super) queued: HashSet<u64>,
    /// The loop is (about to be) blocked in the reactor: a wake must interrupt it.
    pub(super) sleeping: bool,
}

impl Shared {
    pub(super) fn push(&self, word: u64) {
        if self.trace.is_on() {
            self.trace
                .say(Step::Wake, format_args!("a task, from another thread"));
        }
        let mut remote = self.remote.lock().unwrap_or_else(PoisonError::into_inner);
        if remote.queued.insert(word) {
            remote.wakes.push(word);
        }
        let interrupt = std::mem::replace(&mut remote.sleeping, false);
        drop(remote);
        // Only a wake from another thread can find the loop asleep, so the common case,
        // a wake on the loop's own thread, never makes a system call.
        if interrupt && let Err(error) = self.waker.wake() {
            eprintln!("warning: could not interrupt the event loop: {error}");
        }
    }
}
// ANCHOR_END: ready_queue
