//! Coroutine stacks: 256 KiB each by default, carved from large mappings, with a guard
//! page below each one, and a clear message when a coroutine runs off the end of its
//! stack.
//!
//! Read `generator.rs` first: this is where its stacks come from.
//!
//! - A stack is [`DEFAULT_STACK_SIZE`] bytes of address space unless its generator asks
//!   for another size. Only the pages a coroutine touches become resident, so a
//!   suspended coroutine that used little stack costs one or two pages ([`page_size`]:
//!   4 KiB on x86_64, 16 KiB on Apple Silicon), not 256 KiB.
//! - Stacks come from a per-thread pool of chunks, each one `mmap` holding many stacks of
//!   one size. A freed stack goes back to the pool, warm, for the next coroutine.
//! - Below each stack sits a guard page. `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+)
//!   makes it fault without splitting the mapping; older kernels refuse it with `EINVAL`
//!   and we fall back to `mprotect(PROT_NONE)`, which splits the mapping in two per
//!   stack, so `vm.max_map_count` (65,530 by default) caps live coroutines near 32,600.
//!   The `madvise` guards of 64 stacks at a time go in one `process_madvise` call: at a
//!   million stacks, one system call per stack cost a second on its own.
//! - Rust probes every page of a large stack frame in order, so an overflow always
//!   touches the guard page before anything below it. A `SIGSEGV` handler (`SIGBUS` too:
//!   macOS reports guard-page faults with it) on the alternate signal stack recognises
//!   a guard page of this thread's stacks and says `fatal: coroutine stack overflow` before
//!   the process dies.
//!
//! `cargo run -p stage3-generators --example overflow` shows the overflow message.

use std::cell::{Cell, RefCell};
use std::io;
use std::ops::Range;
use std::ptr;
use std::rc::Rc;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

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

/// `MADV_GUARD_INSTALL` from Linux 6.13's `<asm-generic/mman-common.h>`; the `libc`
/// crate does not have it yet.
#[cfg(target_os = "linux")]
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Stacks in the first chunk; each new chunk doubles, up to [`MAX_CHUNK_BYTES`].
const FIRST_CHUNK_STACKS: usize = 16;
/// 4,032 stacks of 260 KiB: 1 GiB of address space per mapping, none of it resident
/// until used. A million coroutines take about 250 mappings.
const MAX_CHUNK_BYTES: usize = 1 << 30;

/// How a stack's guard page was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// `madvise(MADV_GUARD_INSTALL)`: the mapping stays whole.
    Madvise,
    /// `mprotect(PROT_NONE)`: the mapping splits around each guard page.
    Mprotect,
}

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
        prepare_thread();
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
    /// The next chunk on this thread's list for the fault handler (see [`CHUNKS`]).
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
        forget_chunk(self);
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
            remember_chunk(&chunk);
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
            let batch = GUARD_BATCH.min(self.slots - self.next_slot);
            let (guard, installed) = install_guards(base, slot, batch, FORCE_MPROTECT.get())?;
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
    static FORCE_MPROTECT: Cell<bool> = const { Cell::new(false) };
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

/// Makes this thread's new stacks use `mprotect` guard pages even where
/// `MADV_GUARD_INSTALL` works: for tests of the fallback and to show what it costs.
/// Stacks already in the pool keep their guards.
pub fn force_mprotect_guards(on: bool) {
    FORCE_MPROTECT.set(on);
}

/// How this thread's next new stack will be guarded. Maps one stack to find out, the
/// first time, whether the kernel takes `MADV_GUARD_INSTALL`.
pub fn guard_kind() -> io::Result<Guard> {
    let stack = Stack::take()?;
    let guard = stack.guard();
    stack.give_back();
    Ok(
        match FORCE_MPROTECT.get() || !MADVISE_GUARDS.load(Ordering::Relaxed) {
            true => Guard::Mprotect,
            false => guard,
        },
    )
}

// ANCHOR: budget
/// Checks, before any is created, that `coroutines` more stacks fit under
/// `vm.max_map_count`. Only `mprotect` guard pages count against it: each one splits its
/// chunk's mapping, two more mappings per stack, while `madvise` guards split nothing.
pub fn check_stack_budget(coroutines: u64) -> Result<(), shared::Error> {
    let guard = guard_kind().map_err(|e| shared::Error::io("mapping a coroutine stack", e))?;
    let Some(budget) = shared::limits::MapBudget::read() else {
        return Ok(()); // not Linux: nothing to count
    };
    const SPARE: u64 = 256; // chunks, thread stacks, libraries, the allocator's arenas
    let needed = 2 * coroutines + SPARE;
    if guard == Guard::Madvise || needed <= budget.free() {
        return Ok(());
    }
    Err(shared::Error::Limit {
        limit: format!(
            "memory-mapping limit (vm.max_map_count = {}, {} in use)",
            budget.max, budget.used
        ),
        asked: format!(
            "{coroutines} coroutine stacks with mprotect guard pages need about {needed} \
             memory mappings (2 per stack)"
        ),
        fix: format!(
            "Use at most {} coroutines, raise the limit (`sudo sysctl -w vm.max_map_count={}`), \
             or run on Linux 6.13+, whose MADV_GUARD_INSTALL guard pages split no mappings.",
            budget.free().saturating_sub(SPARE) / 2,
            budget.used + needed
        ),
    })
}
// ANCHOR_END: budget

/// Cleared for good the first time the kernel refuses `MADV_GUARD_INSTALL`.
static MADVISE_GUARDS: AtomicBool = AtomicBool::new(cfg!(target_os = "linux"));

/// Guard pages asked for at once, for this many slots of a chunk: one
/// `process_madvise` call installs them all (Linux 6.13+).
const GUARD_BATCH: usize = 64;

/// Cleared for good the first time the kernel refuses `process_madvise` for guard pages.
#[cfg(target_os = "linux")]
static BATCHED_GUARDS: AtomicBool = AtomicBool::new(true);

/// Installs the guard pages of up to `count` consecutive slots, `slot` bytes apart, the
/// first at `first`; returns how they were made and for how many slots (at least one).
fn install_guards(
    first: *mut u8,
    slot: usize,
    count: usize,
    force_mprotect: bool,
) -> io::Result<(Guard, usize)> {
    #[cfg(target_os = "linux")]
    if !force_mprotect && MADVISE_GUARDS.load(Ordering::Relaxed) {
        if count > 1 && BATCHED_GUARDS.load(Ordering::Relaxed) {
            match madvise_guards_at_once(first, slot, count) {
                Ok(()) => return Ok((Guard::Madvise, count)),
                // NB: `process_madvise` takes any advice for the calling process only
                // from Linux 6.13; before, or without pidfds, one call per guard page.
                Err(_) => BATCHED_GUARDS.store(false, Ordering::Relaxed),
            }
        }
        // SAFETY: `first` is the page-aligned start of a slot in a chunk we mapped; its
        // first page belongs to no stack.
        if unsafe { libc::madvise(first.cast(), page_size(), MADV_GUARD_INSTALL) } == 0 {
            return Ok((Guard::Madvise, 1));
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINVAL) {
            return Err(error);
        }
        // NB: a kernel before 6.13 does not know the advice: fall back, once for all.
        MADVISE_GUARDS.store(false, Ordering::Relaxed);
    }
    let _ = (force_mprotect, slot, count);
    // NB: one at a time: each `mprotect` guard costs two mappings of a limited budget.
    // SAFETY: as above; the page becomes inaccessible and nothing was using it.
    if unsafe { libc::mprotect(first.cast(), page_size(), libc::PROT_NONE) } != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ENOMEM) {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "out of memory mappings for coroutine guard pages (each mprotect guard \
                 splits a mapping, and vm.max_map_count caps them): raise \
                 vm.max_map_count, or use Linux 6.13+ where MADV_GUARD_INSTALL does not \
                 split mappings",
            ));
        }
        return Err(error);
    }
    Ok((Guard::Mprotect, 1))
}

/// `MADV_GUARD_INSTALL` on the first page of `count` slots in one `process_madvise` call.
///
/// Installing a guard page costs little; entering the kernel once per stack costs more
/// (1.5 against 0.5 microseconds per stack, measured here at a million stacks).
#[cfg(target_os = "linux")]
fn madvise_guards_at_once(first: *mut u8, slot: usize, count: usize) -> io::Result<()> {
    let mut ranges = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; GUARD_BATCH];
    // NB: a `count` over `GUARD_BATCH` panics here rather than leave stacks unguarded.
    for (i, range) in ranges[..count].iter_mut().enumerate() {
        *range = libc::iovec {
            iov_base: first.wrapping_add(i * slot).cast(),
            iov_len: page_size(),
        };
    }
    // NB: opened per batch, not kept: a pidfd kept in a static would still name the parent
    // in a forked child, and guard the parent's pages instead of the child's.
    // SAFETY: `pidfd_open` takes a pid and flags, and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if pidfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the `count` ranges are each the first page of a slot in a chunk we mapped,
    // which no stack uses; the advice changes no contents.
    let advised = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            pidfd,
            ranges.as_ptr(),
            count,
            MADV_GUARD_INSTALL,
            0,
        )
    };
    let error = io::Error::last_os_error();
    // SAFETY: we opened `pidfd` above and nothing else has it.
    unsafe { libc::close(pidfd as libc::c_int) };
    match usize::try_from(advised) {
        Ok(bytes) if bytes == count * page_size() => Ok(()),
        Ok(bytes) => Err(io::Error::other(format!(
            "process_madvise advised {bytes} of {} bytes",
            count * page_size()
        ))),
        Err(_) => Err(error),
    }
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
fn remember_chunk(chunk: &Rc<Chunk>) {
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
fn forget_chunk(chunk: &Chunk) {
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
fn prepare_thread() {
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

    /// The mappings of this process that overlap `range`: counted there only, so that
    /// tests running beside this one, mapping and unmapping, cannot change the count.
    #[cfg(target_os = "linux")]
    fn mappings_in(range: Range<usize>) -> usize {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        maps.lines()
            .filter_map(|line| {
                let (start, rest) = line.split_once('-')?;
                let end = rest.split_whitespace().next()?;
                let start = usize::from_str_radix(start, 16).ok()?;
                let end = usize::from_str_radix(end, 16).ok()?;
                Some(start < range.end && end > range.start)
            })
            .filter(|&overlaps| overlaps)
            .count()
    }

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

    #[test]
    fn stacks_are_distinct_aligned_and_recycled() {
        let a = Stack::take().unwrap();
        let b = Stack::take().unwrap();
        assert_ne!(a.top(), b.top());
        assert_eq!(a.top() as usize % 16, 0);
        let top = b.top();
        b.give_back();
        let c = Stack::take().unwrap();
        assert_eq!(c.top(), top, "a freed stack is reused first");
        a.give_back();
        c.give_back();
    }

    // Run on fresh threads: each has its own pool, so the chunks they map are theirs.
    #[cfg(target_os = "linux")]
    #[test]
    fn mprotect_guards_split_the_mapping_and_madvise_guards_do_not() {
        let count = |force: bool| {
            std::thread::spawn(move || {
                force_mprotect_guards(force);
                let stacks: Vec<Stack> = (0..100).map(|_| Stack::take().unwrap()).collect();
                let low = stacks.iter().map(|s| s.guard_page().start).min().unwrap();
                let high = stacks.iter().map(|s| s.top() as usize).max().unwrap();
                // One mapping for the whole span if nothing split it.
                let grown = mappings_in(low..high);
                (stacks[0].guard(), grown)
            })
            .join()
            .unwrap()
        };
        let (guard, grown) = count(true);
        assert_eq!(guard, Guard::Mprotect);
        assert!(grown >= 150, "100 mprotect guards: {grown} new mappings");
        let (guard, grown) = count(false);
        if guard == Guard::Madvise {
            assert!(grown < 20, "100 madvise guards: {grown} new mappings");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_mapping_budget_is_checked_before_mprotect_guards_run_out() {
        std::thread::spawn(|| {
            force_mprotect_guards(true);
            assert_eq!(guard_kind().unwrap(), Guard::Mprotect);
            check_stack_budget(1000).unwrap();
            let error = check_stack_budget(100_000).unwrap_err();
            assert!(matches!(error, shared::Error::Limit { .. }), "{error:?}");
            let text = error.to_string();
            assert!(text.contains("vm.max_map_count"), "{text}");
            assert!(text.contains("Use at most"), "{text}");
            force_mprotect_guards(false);
            if guard_kind().unwrap() == Guard::Madvise {
                check_stack_budget(1_000_000).unwrap();
            }
        })
        .join()
        .unwrap();
    }
}
