//! Coroutine stacks: 256 KiB each by default, carved from large mappings, with a guard
//! page below each one, and a clear message when a coroutine runs off the end of its
//! stack.
//!
//! Read `generator.rs` first: this is where its stacks come from. It needs three calls of
//! this file, the pool: [`Stack::take`] (or [`Stack::take_sized`]) for a new generator,
//! [`Stack::top`] to lay out its first frame, and [`Stack::give_back`] once its body has
//! finished. Two files beside this one keep a runaway coroutine from doing harm:
//! `guard.rs` puts a guard page below each stack, and `overflow.rs` says so when a
//! coroutine runs into one.
//!
//! - A stack is [`DEFAULT_STACK_SIZE`] bytes of address space unless its generator asks
//!   for another size. Only the pages a coroutine touches become resident, so a
//!   suspended coroutine that used little stack costs one or two pages ([`page_size`]:
//!   4 KiB on x86_64, 16 KiB on Apple Silicon), not 256 KiB.
//! - Stacks come from a per-thread pool of chunks, each one `mmap` holding many stacks of
//!   one size. A freed stack goes back to the pool, warm, for the next coroutine.
//! - Below each stack sits a guard page (`guard.rs`). `madvise(MADV_GUARD_INSTALL)`
//!   (Linux 6.13+) makes it fault without splitting the mapping; older kernels refuse it
//!   with `EINVAL` and we fall back to `mprotect(PROT_NONE)`, which splits the mapping in
//!   two per stack, so `vm.max_map_count` (65,530 by default) caps live coroutines near
//!   32,600. The `madvise` guards of 64 stacks at a time go in one `process_madvise`
//!   call: at a million stacks, one system call per stack cost a second on its own.
//! - Rust probes every page of a large stack frame in order, so an overflow always
//!   touches the guard page before anything below it. A `SIGSEGV` handler (`SIGBUS` too:
//!   macOS reports guard-page faults with it) on the alternate signal stack recognises
//!   a guard page of this thread's stacks and says `fatal: coroutine stack overflow` before
//!   the process dies (`overflow.rs`).
//!
//! `cargo run -p stage3-generators --example overflow` shows the overflow message.

mod guard;
mod overflow;

pub use guard::{Guard, check_stack_budget, force_mprotect_guards, guard_kind};

use std::cell::{Cell, RefCell};
use std::io;
use std::ops::Range;
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::AtomicPtr;

/// Usable bytes per coroutine stack unless its generator asks for another size (the
/// guard page comes on top).
///
/// Printing a panic's backtrace (`RUST_BACKTRACE=1`) takes about 20 KiB of stack on its
/// own; 256 KiB leaves a body over 200 KiB of its own for that to still work. Untouched
/// pages cost address space only, no memory.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// The smallest stack a generator may ask for: room for `entry`, a small body and a panic
/// without a backtrace.
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// The largest stack a generator may ask for (a thread's main stack is usually 8 MiB).
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// Stacks in the first chunk; each new chunk doubles, up to [`MAX_CHUNK_BYTES`].
const FIRST_CHUNK_STACKS: usize = 16;
/// 4,032 stacks of 260 KiB: 1 GiB of address space per mapping, none of it resident
/// until used. A million coroutines take about 250 mappings.
const MAX_CHUNK_BYTES: usize = 1 << 30;

/// One coroutine stack: [`Stack::size`] bytes above a guard page, inside a chunk.
#[derive(Debug)]
pub struct Stack {
    /// The chunk stays mapped while any of its stacks is out.
    _chunk: Rc<Chunk>,
    /// The lowest address: the guard page starts here.
    base: *mut u8,
    /// Usable bytes, a multiple of the page size.
    size: usize,
    guard: Guard,
}

impl Stack {
    /// The upper end (stacks grow down), aligned to a page.
    pub fn top(&self) -> *mut u8 {
        self.base.wrapping_add(page_size() + self.size)
    }

    /// Usable bytes, below [`Stack::top`] and above the guard page.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The addresses of the guard page.
    pub fn guard_page(&self) -> Range<usize> {
        let base = self.base as usize;
        base..base + page_size()
    }

    /// How the guard page was made.
    pub fn guard(&self) -> Guard {
        self.guard
    }

    /// Takes a stack of [`DEFAULT_STACK_SIZE`] from this thread's pool, mapping a new
    /// chunk when it is empty.
    pub fn take() -> io::Result<Stack> {
        Stack::take_sized(DEFAULT_STACK_SIZE)
    }

    /// Takes a stack of at least `size` usable bytes (rounded up to whole pages) from
    /// this thread's pool for that size. Sizes outside [`MIN_STACK_SIZE`] to
    /// [`MAX_STACK_SIZE`] are an `InvalidInput` error.
    pub fn take_sized(size: usize) -> io::Result<Stack> {
        if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a coroutine stack of {size} bytes: give it {} KiB to {} MiB",
                    MIN_STACK_SIZE / 1024,
                    MAX_STACK_SIZE >> 20
                ),
            ));
        }
        let size = size.next_multiple_of(page_size());
        overflow::prepare_thread();
        POOLS.with(|pools| {
            let mut pools = pools.borrow_mut();
            let at = match pools.iter().position(|pool| pool.size == size) {
                Some(at) => at,
                None => {
                    pools.push(Pool::new(size));
                    pools.len() - 1
                }
            };
            pools[at].take()
        })
    }

    /// Gives the stack back to this thread's pool (or unmaps it once its chunk is unused,
    /// when the thread is exiting).
    pub fn give_back(self) {
        let _ = IN_USE.try_with(|in_use| in_use.set(in_use.get() - 1));
        let _ = POOLS.try_with(|pools| {
            let mut pools = pools.borrow_mut();
            if let Some(pool) = pools.iter_mut().find(|pool| pool.size == self.size) {
                pool.free.push(self);
            }
        });
    }
}

/// One anonymous mapping holding many stacks, unmapped when the last of them is dropped.
#[derive(Debug)]
struct Chunk {
    ptr: *mut u8,
    len: usize,
    /// Bytes per stack, its guard page included: slot `i` starts at `ptr + i * slot`.
    slot: usize,
    /// The next chunk on this thread's list for the fault handler (see `overflow.rs`).
    next: AtomicPtr<Chunk>,
}

impl Chunk {
    /// Maps `len` bytes for stacks of `size` usable bytes each.
    fn map(len: usize, size: usize) -> io::Result<Chunk> {
        #[cfg(target_os = "linux")]
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK;
        #[cfg(not(target_os = "linux"))]
        let flags = libc::MAP_PRIVATE | libc::MAP_ANON;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing
        // touches no existing memory.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::ENOMEM) {
                // NB: address space, not memory: untouched pages cost none, but `ulimit -v`
                // (RLIMIT_AS) counts every byte mapped.
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "no address space left for {} KiB more of coroutine stacks (each \
                         reserves its full {} KiB, touched or not): use fewer coroutines or \
                         smaller stacks, or raise `ulimit -v`",
                        len / 1024,
                        size / 1024
                    ),
                ));
            }
            return Err(error);
        }
        // NB: Linux 6.7+ already keeps transparent huge pages out of `MAP_STACK` mappings;
        // older kernels with THP set to `always` would back a touched page of a stack with
        // 2 MiB. Best effort: a kernel without THP refuses the advice, which is fine.
        #[cfg(target_os = "linux")]
        // SAFETY: advice about the range we just mapped; it changes no contents.
        unsafe {
            libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE)
        };
        Ok(Chunk {
            ptr: ptr.cast(),
            len,
            slot: page_size() + size,
            next: AtomicPtr::new(ptr::null_mut()),
        })
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        overflow::forget_chunk(self);
        // SAFETY: we mapped exactly this range, and no stack of it is left (each holds an
        // `Rc` to its chunk), so nothing can use it any more.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// This thread's stacks of one size: free ones first, then fresh slots of the newest
/// chunk.
#[derive(Debug)]
struct Pool {
    /// Usable bytes per stack.
    size: usize,
    free: Vec<Stack>,
    chunk: Option<Rc<Chunk>>,
    /// Slots of `chunk` not handed out yet.
    next_slot: usize,
    /// Slots of `chunk` below this one have their guard pages already.
    guarded: usize,
    /// How they were made.
    guard: Guard,
    slots: usize,
}

impl Pool {
    fn new(size: usize) -> Pool {
        Pool {
            size,
            free: Vec::new(),
            chunk: None,
            next_slot: 0,
            guarded: 0,
            guard: Guard::Madvise,
            slots: 0,
        }
    }

    fn take(&mut self) -> io::Result<Stack> {
        if let Some(stack) = self.free.pop() {
            IN_USE.set(IN_USE.get() + 1);
            return Ok(stack);
        }
        let slot = page_size() + self.size;
        if self.chunk.is_none() || self.next_slot == self.slots {
            let most = (MAX_CHUNK_BYTES / slot).max(1);
            let mut slots = (self.slots * 2).clamp(FIRST_CHUNK_STACKS.min(most), most);
            // Out of address space for a whole chunk, a smaller one may still fit.
            let chunk = loop {
                match Chunk::map(slots * slot, self.size) {
                    Err(e) if e.kind() == io::ErrorKind::OutOfMemory && slots > 1 => slots /= 2,
                    mapped => break mapped?,
                }
            };
            let chunk = Rc::new(chunk);
            overflow::remember_chunk(&chunk);
            self.chunk = Some(chunk);
            self.slots = slots;
            self.next_slot = 0;
            self.guarded = 0;
        }
        let chunk = self.chunk.clone().expect("a chunk was just mapped");
        let base = chunk.ptr.wrapping_add(self.next_slot * slot);
        if self.next_slot == self.guarded {
            // Guard pages for the next few slots at once: one system call instead of one
            // per stack, where the kernel allows it.
            let batch = guard::GUARD_BATCH.min(self.slots - self.next_slot);
            let (guard, installed) = guard::install_guards(base, slot, batch)?;
            self.guard = guard;
            self.guarded += installed;
        }
        self.next_slot += 1;
        IN_USE.set(IN_USE.get() + 1);
        Ok(Stack {
            _chunk: chunk,
            base,
            size: self.size,
            guard: self.guard,
        })
    }
}

thread_local! {
    /// One pool per stack size in use on this thread (usually just the default).
    static POOLS: RefCell<Vec<Pool>> = const { RefCell::new(Vec::new()) };
    static IN_USE: Cell<usize> = const { Cell::new(0) };
}

/// Stacks this thread has taken and not given back: one per live generator (and per
/// leaked one, for good).
pub fn stacks_in_use() -> usize {
    IN_USE.get()
}

/// Drops this thread's free stacks, so their memory goes back to the OS: a chunk is
/// unmapped once none of its stacks is in use. Call it when a burst of coroutines is
/// over; otherwise the pool keeps every stack it ever handed out, warm, for reuse.
// NB: a million finished coroutines would otherwise keep 4 GiB resident, and every later
// measurement in the same thread would see free, already-resident stacks.
pub fn release_free_stacks() {
    // Dropped outside the borrow: dropping a stack does not come back here, but its
    // chunk's `munmap` need not run under it either.
    let pools = POOLS.with(|pools| std::mem::take(&mut *pools.borrow_mut()));
    drop(pools);
}

/// The page size, asked once: 4 KiB on x86_64, 16 KiB on Apple Silicon, 4 to 64 KiB
/// on Linux aarch64.
pub fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: `sysconf` only reads a system constant.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        // POSIX requires the page size; a system without one could not map our stacks.
        usize::try_from(size)
            .ok()
            .filter(|size| size.is_power_of_two())
            .expect("sysconf(_SC_PAGESIZE) gives the page size")
    })
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn released_stacks_leave_the_pool_and_stacks_in_use_stay_valid() {
        std::thread::spawn(|| {
            let in_use = Stack::take().unwrap();
            let freed: Vec<Stack> = (0..100).map(|_| Stack::take().unwrap()).collect();
            freed.into_iter().for_each(Stack::give_back);
            release_free_stacks();
            POOLS.with(|pools| assert!(pools.borrow().is_empty()));
            // The stack still out keeps its chunk mapped.
            // SAFETY: the top word of a stack we own and nothing runs on.
            unsafe { in_use.top().cast::<u64>().sub(1).write_volatile(7) };
            let fresh = Stack::take().unwrap();
            assert_ne!(fresh.top(), in_use.top());
        })
        .join()
        .unwrap();
    }
}
