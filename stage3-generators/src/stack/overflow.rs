//! A coroutine that runs off the end of its stack must die with a clear message, not a
//! bare `Segmentation fault`.
//!
//! Read `mod.rs` and `guard.rs` first: an overflow runs into the guard page below the
//! stack. Rust probes every page of a large stack frame in order, so it always touches
//! that page before anything below it. A `SIGSEGV` handler (`SIGBUS` too: macOS reports
//! guard-page faults with it), running on the thread's alternate signal stack because the
//! coroutine's stack is full, looks the fault address up in this thread's list of chunks
//! and, if it falls in one of their guard pages, writes `fatal: coroutine stack overflow`
//! before the process dies. Any other fault goes to the handler that was there before.
//!
//! The pool calls [`prepare_thread`] before it hands out a stack, and
//! [`remember_chunk`] / [`forget_chunk`] when it maps or unmaps a chunk: nothing here
//! runs on a switch.

use std::ops::Range;
use std::ptr;
use std::rc::Rc;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, Ordering};

use super::{Chunk, page_size};

// ANCHOR: overflow
thread_local! {
    /// This thread's chunks of stacks, newest first, for the fault handler: changed when a
    /// chunk is mapped or unmapped (a few hundred times for a million stacks), never on a
    /// switch. Coroutines are `!Send`: a stack only ever runs on the thread that took it.
    // NB: a `const` thread-local without a destructor is a plain TLS access, safe to
    // read in a signal handler. The handler does not need to know which coroutine runs:
    // a fault in any guard page of ours is one of our stacks overflowing. (Keeping the
    // running stack in a thread-local instead costs a save and a restore on every switch.)
    static CHUNKS: AtomicPtr<Chunk> = const { AtomicPtr::new(ptr::null_mut()) };
}

/// Puts a freshly mapped chunk on this thread's list, where it stays until it is unmapped.
pub(super) fn remember_chunk(chunk: &Rc<Chunk>) {
    CHUNKS.with(|head| {
        chunk
            .next
            .store(head.load(Ordering::Relaxed), Ordering::Relaxed);
        // Release: a fault handler that finds the chunk on the list sees all its fields.
        head.store(Rc::as_ptr(chunk).cast_mut(), Ordering::Release);
    });
}

/// Takes a chunk off this thread's list before it is unmapped and freed. One store
/// unlinks it, so a fault handler that interrupts us sees the list either with it or
/// without it, and never a chunk that is gone.
pub(super) fn forget_chunk(chunk: &Chunk) {
    let this = ptr::from_ref(chunk).cast_mut();
    let _ = CHUNKS.try_with(|head| {
        let mut link = head;
        loop {
            let current = link.load(Ordering::Acquire);
            if current.is_null() {
                return; // never remembered
            }
            if current == this {
                link.store(chunk.next.load(Ordering::Relaxed), Ordering::Release);
                return;
            }
            // SAFETY: every chunk on the list is alive: it leaves the list before it is
            // freed, here.
            link = unsafe { &(*current).next };
        }
    });
}

/// The guard page that `address` falls in, if it is one of this thread's stacks, with the
/// usable size of the stack above it. Reads only atomics: safe in a signal handler.
fn guard_page_at(address: usize) -> Option<(Range<usize>, usize)> {
    let page = page_size();
    let mut chunk = CHUNKS.with(|head| head.load(Ordering::Acquire));
    // SAFETY: every chunk on the list is alive (see `forget_chunk`).
    while let Some(found) = unsafe { chunk.as_ref() } {
        let start = found.ptr as usize;
        if (start..start + found.len).contains(&address) {
            let base = start + (address - start) / found.slot * found.slot;
            return (address < base + page).then(|| (base..base + page, found.slot - page));
        }
        chunk = found.next.load(Ordering::Acquire);
    }
    None
}

/// The signals a guard-page fault arrives as: `SIGSEGV` on Linux, `SIGBUS` on macOS.
const FAULTS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// The dispositions that were there before ours (the Rust runtime's, usually), in the
/// order of [`FAULTS`].
static PREVIOUS: [AtomicPtr<libc::sigaction>; 2] = [const { AtomicPtr::new(ptr::null_mut()) }; 2];

/// Runs on the alternate signal stack, because the faulting stack has no room left.
extern "C" fn on_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO` handler.
    let fault = unsafe { (*info).si_addr() } as usize;
    // The page size it reads was asked for before any stack was mapped: a plain atomic
    // load now.
    if let Some((
        Range {
            start: low,
            end: high,
        },
        size,
    )) = guard_page_at(fault)
    {
        let mut line = Line::default();
        line.push(b"fatal: coroutine stack overflow (fault at ");
        line.push_hex(fault);
        line.push(b", guard page ");
        line.push_hex(low);
        line.push(b"..");
        line.push_hex(high);
        line.push(b"; the stack is ");
        line.push_decimal(size / 1024);
        line.push(
            b" KiB: recurse less, keep big buffers on the heap, or ask for a bigger stack)\n",
        );
        // SAFETY: `write` and `signal` are async-signal-safe; the buffer is ours.
        unsafe {
            libc::write(2, line.buf.as_ptr().cast(), line.len);
            libc::signal(signal, libc::SIG_DFL);
        }
        // Returning re-runs the faulting instruction, which now kills the process with
        // the same signal, as a core dump or a debugger expects.
        return;
    }
    // Not ours: hand it to the previous handler, or let the default action happen.
    let slot = usize::from(signal != FAULTS[0]);
    let previous = PREVIOUS[slot].load(Ordering::Acquire);
    // SAFETY: `previous` is null or the leaked `sigaction` saved at install time, never
    // freed; calling the previous handler with our arguments is what it was installed for.
    unsafe {
        match previous.as_ref() {
            Some(old) if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN => {
                if old.sa_flags & libc::SA_SIGINFO != 0 {
                    let handler: extern "C" fn(
                        libc::c_int,
                        *mut libc::siginfo_t,
                        *mut libc::c_void,
                    ) = std::mem::transmute(old.sa_sigaction);
                    handler(signal, info, context);
                } else {
                    let handler: extern "C" fn(libc::c_int) = std::mem::transmute(old.sa_sigaction);
                    handler(signal);
                }
            }
            _ => {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
    }
}
// ANCHOR_END: overflow

/// A message built without allocating (we are in a signal handler).
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Default for Line {
    fn default() -> Line {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_decimal(&mut self, mut value: usize) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.push(&digits[at..]);
    }

    fn push_hex(&mut self, value: usize) {
        let mut digits = [0u8; 18];
        digits[..2].copy_from_slice(b"0x");
        for (i, digit) in digits[2..].iter_mut().enumerate() {
            let nibble = (value >> (60 - 4 * i)) & 0xf;
            *digit = b"0123456789abcdef"[nibble];
        }
        self.push(&digits);
    }
}

/// Installs the fault handler once per process, and makes sure this thread has an
/// alternate signal stack for it to run on.
pub(super) fn prepare_thread() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: an all-zero `sigaction` is a valid value to fill in.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_fault as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        for (signal, previous) in FAULTS.into_iter().zip(&PREVIOUS) {
            // SAFETY: as above.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: both structs are valid; the handler only does async-signal-safe work.
            if unsafe { libc::sigaction(signal, &action, &mut old) } == 0 {
                previous.store(Box::into_raw(Box::new(old)), Ordering::Release);
            }
        }
    });
    ALT_STACK.with(|alt| {
        alt.get_or_init(AltStack::ensure);
    });
}

thread_local! {
    static ALT_STACK: std::cell::OnceCell<Option<AltStack>> = const { std::cell::OnceCell::new() };
}

/// An alternate signal stack we installed ourselves, removed when the thread exits.
/// Threads started by Rust's `std` already have one; threads made by C code may not.
struct AltStack {
    ptr: *mut libc::c_void,
    len: usize,
}

impl AltStack {
    fn ensure() -> Option<AltStack> {
        // SAFETY: an all-zero `stack_t` is a valid value to fill in.
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: a null new stack only queries the current one into `current`.
        unsafe { libc::sigaltstack(ptr::null(), &mut current) };
        if current.ss_flags & libc::SS_DISABLE == 0 {
            return None;
        }
        let len = 64 * 1024;
        // SAFETY: a fresh anonymous mapping touches no existing memory.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANON,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        let stack = libc::stack_t {
            ss_sp: ptr,
            ss_flags: 0,
            ss_size: len,
        };
        // SAFETY: `stack` describes the mapping we just made, which lives until `drop`.
        unsafe { libc::sigaltstack(&stack, ptr::null_mut()) };
        Some(AltStack { ptr, len })
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: we stop using the stack before unmapping it; it is ours.
        unsafe {
            libc::sigaltstack(&disable, ptr::null_mut());
            libc::munmap(self.ptr, self.len);
        }
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use crate::stack::{MIN_STACK_SIZE, Stack, release_free_stacks};

    #[test]
    fn the_fault_handler_finds_the_guard_pages_of_this_threads_stacks_only() {
        std::thread::spawn(|| {
            let small = Stack::take_sized(MIN_STACK_SIZE).unwrap();
            let stacks: Vec<Stack> = (0..40).map(|_| Stack::take().unwrap()).collect();
            for stack in stacks.iter().chain([&small]) {
                let guard = stack.guard_page();
                let expected = Some((guard.clone(), stack.size()));
                assert_eq!(guard_page_at(guard.start), expected);
                assert_eq!(guard_page_at(guard.end - 1), expected);
                // The stack itself, just above its guard page and at its top, is not one.
                assert_eq!(guard_page_at(guard.end), None);
                assert_eq!(guard_page_at(stack.top() as usize - 1), None);
            }
            let guard = small.guard_page();
            // Another thread's stacks are not on this thread's list.
            std::thread::spawn(move || assert_eq!(guard_page_at(guard.start), None))
                .join()
                .unwrap();
            // Unmapped chunks leave the list.
            let guard = stacks[0].guard_page();
            stacks.into_iter().for_each(Stack::give_back);
            small.give_back();
            release_free_stacks();
            assert_eq!(guard_page_at(guard.start), None);
            CHUNKS.with(|head| assert!(head.load(Ordering::Relaxed).is_null()));
        })
        .join()
        .unwrap();
    }
}
