//! The latency table of the article's section 1.2, measured on this machine: caches and
//! memory, a mutex, a system call, a thread switch, our coroutines and tasks, a loopback
//! round trip, a read from the disk and an `fsync`.
//!
//! ```text
//! cargo run --release -p stage5-bench --bin latency               # about 15 seconds
//! cargo run --release -p stage5-bench --bin latency -- --runs 15  # more runs per row
//! cargo run --release -p stage5-bench --bin latency -- --dir /mnt/disk   # files there
//! ```
//!
//! Each row is measured `--runs` times (a run repeats the operation many times and
//! divides); the table shows the median run, the fastest and slowest, and the article's
//! human scale: one nanosecond as one second (which is what the article's figures
//! are), and one CPU cycle as one second (what its text says), at the clock rate measured
//! here. A row that cannot be measured on this OS says why.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use stage5_bench::stats::Summary;
use stage5_bench::text::{print_markdown, thousands};

#[derive(clap::Parser)]
/// Measures the latency table of the article's section 1.2 on this machine.
struct Args {
    /// Runs per row; the table shows their median and range.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=99))]
    runs: u32,
    /// Where to put the scratch file for the disk rows (removed afterwards). It should be
    /// on the disk you care about, not on a RAM-backed tmpfs.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

/// A row of the table.
struct Row {
    /// What was measured, as the table names it.
    name: String,
    /// How, in one line, for the notes under the table.
    how: String,
    /// The article's row beside it: its name and its figure (on its scale).
    article: Option<(&'static str, &'static str)>,
    /// Nanoseconds per operation over the runs, or why there are none.
    ns: Result<Summary, String>,
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    let runs = args.runs as usize;
    let clock = clock_ghz();
    let caches = caches();
    let mut rows = Vec::new();

    for (level, bytes) in [(1, caches.l1), (2, caches.l2), (3, caches.l3)] {
        rows.push(match bytes {
            Some(size) => cache_row(level, size, &caches, runs),
            None => Row {
                name: format!("L{level} cache load"),
                how: format!("no L{level} cache reported by the OS"),
                article: None,
                ns: Err(format!("no L{level} cache reported")),
            },
        });
    }
    rows.push(memory_row(&caches, runs));
    rows.push(uncontended_mutex(runs));
    rows.push(contended_mutex(runs));
    rows.push(system_call(runs));
    rows.push(context_switch(runs));
    rows.push(coroutine_switch(runs));
    rows.push(task_wake(runs));
    rows.push(tcp_round_trip(runs));
    let scratch = Scratch::new(&args.dir);
    rows.push(uncached_read(&scratch, runs));
    rows.push(fsync(&scratch, runs));
    drop(scratch);

    print(&rows, clock, &caches, args.runs);
    ExitCode::SUCCESS
}

/// Runs `once` (which returns nanoseconds per operation) `runs` times, after one run
/// to warm up.
fn measure(runs: usize, mut once: impl FnMut() -> Result<f64, String>) -> Result<Summary, String> {
    once()?;
    let values = (0..runs)
        .map(|_| once())
        .collect::<Result<Vec<f64>, String>>()?;
    Summary::of(&values).ok_or_else(|| "no measurement".to_string())
}

fn per_op(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

// ---------------------------------------------------------------------------------------
// The clock rate, for the "one cycle as one second" scale.

/// GHz, from a chain of dependent additions (one cycle each on every core we target),
/// and whether it was measured (`false`: 3 GHz assumed).
fn clock_ghz() -> (f64, bool) {
    // Many short tries (a third of a millisecond each): on a busy machine a long one is
    // nearly always interrupted, a short one often is not.
    const ITERATIONS: u64 = 10_000; // 100 additions each
    let mut best = None::<f64>;
    for _ in 0..300 {
        let start = Instant::now();
        let Some(x) = add_chain(ITERATIONS) else {
            return (3.0, false);
        };
        black_box(x);
        let ghz = (ITERATIONS * 100) as f64 / start.elapsed().as_nanos() as f64;
        // Interference only ever slows the chain down: the fastest run is the clock.
        best = Some(best.map_or(ghz, |b: f64| b.max(ghz)));
    }
    (best.unwrap_or(3.0), true)
}

#[cfg(target_arch = "x86_64")]
fn add_chain(iterations: u64) -> Option<u64> {
    let mut x = 0u64;
    for _ in 0..iterations {
        // SAFETY: only arithmetic on one register we own; no memory, no stack.
        unsafe {
            std::arch::asm!(".rept 100", "add {x}, 1", ".endr", x = inout(reg) x,
                options(nomem, nostack));
        }
    }
    Some(x)
}

#[cfg(target_arch = "aarch64")]
fn add_chain(iterations: u64) -> Option<u64> {
    let mut x = 0u64;
    for _ in 0..iterations {
        // SAFETY: only arithmetic on one register we own; no memory, no stack.
        unsafe {
            std::arch::asm!(".rept 100", "add {x}, {x}, #1", ".endr", x = inout(reg) x,
                options(nomem, nostack));
        }
    }
    Some(x)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn add_chain(_iterations: u64) -> Option<u64> {
    None
}

// ---------------------------------------------------------------------------------------
// Caches and memory: pointer chasing.

/// Cache sizes in bytes, as the OS reports them (data or unified caches, one core's).
struct Caches {
    l1: Option<usize>,
    l2: Option<usize>,
    l3: Option<usize>,
    source: &'static str,
}

#[cfg(target_os = "linux")]
fn caches() -> Caches {
    let mut caches = Caches {
        l1: None,
        l2: None,
        l3: None,
        source: "/sys/devices/system/cpu/cpu0/cache",
    };
    for index in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{index}");
        let read = |file: &str| std::fs::read_to_string(format!("{dir}/{file}")).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        if kind.trim() == "Instruction" {
            continue;
        }
        let size = size.trim();
        let bytes = match size.strip_suffix('K') {
            Some(k) => k.parse::<usize>().ok().map(|k| k << 10),
            None => match size.strip_suffix('M') {
                Some(m) => m.parse::<usize>().ok().map(|m| m << 20),
                None => size.parse().ok(),
            },
        };
        match level.trim() {
            "1" => caches.l1 = bytes,
            "2" => caches.l2 = bytes,
            "3" => caches.l3 = bytes,
            _ => {}
        }
    }
    if caches.l1.is_none() {
        return assumed_caches();
    }
    caches
}

#[cfg(target_os = "macos")]
fn caches() -> Caches {
    fn sysctl(name: &str) -> Option<usize> {
        let name = std::ffi::CString::new(name).ok()?;
        let mut value: u64 = 0;
        let mut size = std::mem::size_of::<u64>();
        // SAFETY: `name` is NUL-terminated; `value` and `size` describe a writable u64.
        let rc = unsafe {
            libc::sysctlbyname(
                name.as_ptr(),
                (&mut value as *mut u64).cast(),
                &mut size,
                std::ptr::null_mut(),
                0,
            )
        };
        (rc == 0 && value > 0).then_some(value as usize)
    }
    // Apple Silicon reports the performance cores' caches under perflevel0.
    let either = |a: &str, b: &str| sysctl(a).or_else(|| sysctl(b));
    let caches = Caches {
        l1: either("hw.perflevel0.l1dcachesize", "hw.l1dcachesize"),
        l2: either("hw.perflevel0.l2cachesize", "hw.l2cachesize"),
        l3: sysctl("hw.l3cachesize"),
        source: "sysctl hw.*cachesize",
    };
    if caches.l1.is_none() {
        return assumed_caches();
    }
    caches
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn caches() -> Caches {
    assumed_caches()
}

fn assumed_caches() -> Caches {
    Caches {
        l1: Some(32 << 10),
        l2: Some(1 << 20),
        l3: None,
        source: "assumed: the OS did not say",
    }
}

const LINE: usize = 64;

/// A buffer of `bytes` whose cache lines form one random cycle: each line's first word
/// holds the index of the next. Following it makes every load wait for the one before,
/// and the random order defeats the prefetcher.
fn chase_buffer(bytes: usize) -> Vec<usize> {
    let words = LINE / std::mem::size_of::<usize>();
    let lines = (bytes / LINE).max(2);
    let mut order: Vec<usize> = (0..lines).collect();
    // Sattolo's shuffle: a single cycle through every line.
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..lines).rev() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let j = (rng % i as u64) as usize;
        order.swap(i, j);
    }
    let mut buffer = vec![0usize; lines * words];
    for pair in 0..lines {
        let (from, to) = (order[pair], order[(pair + 1) % lines]);
        buffer[from * words] = to * words;
    }
    buffer
}

fn chase(buffer: &[usize], loads: u64) -> usize {
    let mut at = 0;
    for _ in 0..loads {
        at = buffer[at];
    }
    at
}

fn chase_row(buffer: &[usize], loads: u64, runs: usize) -> Result<Summary, String> {
    measure(runs, || {
        let start = Instant::now();
        black_box(chase(black_box(buffer), loads));
        Ok(per_op(start.elapsed(), loads))
    })
}

fn cache_row(level: u8, cache: usize, caches: &Caches, runs: usize) -> Row {
    // Half of L1 and L2. For L3, four times the L2 (capped at half the L3): a VM's share
    // of a shared L3 can be far smaller than the size it reports (on the machine this
    // book was measured on, loads past about 5 MiB of a "32 MiB" L3 cost as much as main
    // memory).
    let bytes = match (level, caches.l2) {
        (3, Some(l2)) => (l2 * 4).min(cache / 2),
        _ => cache / 2,
    };
    let buffer = chase_buffer(bytes);
    let article = match level {
        1 => Some(("L1 cache reference", "0.5 s")),
        2 => Some(("L2 cache reference", "7 s")),
        _ => None,
    };
    let share = if bytes == cache / 2 {
        "half".to_string()
    } else {
        format!("{} of", fraction(bytes, cache))
    };
    Row {
        name: format!("L{level} cache load"),
        how: format!(
            "pointer chase in random order over {} ({share} the {} L{level})",
            size(bytes),
            size(cache)
        ),
        article,
        ns: chase_row(&buffer, 4_000_000, runs),
    }
}

/// `1/8`: how much of `whole` `part` is, as the table notes say it.
fn fraction(part: usize, whole: usize) -> String {
    match whole.checked_div(part) {
        Some(n) if n * part == whole => format!("1/{n}"),
        _ => format!("{:.0}%", part as f64 * 100.0 / whole as f64),
    }
}

fn memory_row(caches: &Caches, runs: usize) -> Row {
    let largest = caches.l3.or(caches.l2).unwrap_or(1 << 20);
    let bytes = (largest * 8).clamp(256 << 20, 1 << 30);
    let buffer = chase_buffer(bytes);
    Row {
        name: "main-memory load".into(),
        how: format!(
            "pointer chase in random order over {} ({} times the last cache), so most loads \
             also miss the TLB, as a real random access would",
            size(bytes),
            bytes / largest
        ),
        article: Some(("main memory reference", "100 s")),
        ns: chase_row(&buffer, 1_000_000, runs),
    }
}

// ---------------------------------------------------------------------------------------
// Locks and threads.

fn uncontended_mutex(runs: usize) -> Row {
    const OPS: u64 = 2_000_000;
    let mutex = Mutex::new(0u64);
    Row {
        name: "uncontended mutex lock+unlock".into(),
        how: "std::sync::Mutex, one thread".into(),
        article: Some(("mutex lock/unlock", "25 s")),
        ns: measure(runs, || {
            let start = Instant::now();
            for _ in 0..OPS {
                *black_box(&mutex).lock().unwrap_or_else(|e| e.into_inner()) += 1;
            }
            Ok(per_op(start.elapsed(), OPS))
        }),
    }
}

// ANCHOR: contended
/// Two threads take turns: each waits until the counter says it is its turn, under the
/// lock, then passes the turn on. One hand-off: from one thread's unlock to the other
/// thread holding the lock and seeing its turn.
fn contended_mutex(runs: usize) -> Row {
    const HANDOFFS: u64 = 20_000;
    let once = || {
        let turn = Arc::new(Mutex::new(0u64));
        let player = |me: u64| {
            let turn = Arc::clone(&turn);
            move || {
                for round in 0..HANDOFFS / 2 {
                    let mine = round * 2 + me;
                    loop {
                        let mut now = turn.lock().unwrap_or_else(|e| e.into_inner());
                        if *now == mine {
                            *now += 1;
                            break;
                        }
                        drop(now);
                        std::hint::spin_loop();
                    }
                }
            }
        };
        let start = Instant::now();
        let other = thread::spawn(player(1));
        player(0)();
        other.join().map_err(|_| "a thread panicked".to_string())?;
        Ok(per_op(start.elapsed(), HANDOFFS))
    };
    Row {
        name: "mutex hand-off, two threads".into(),
        how: "std::sync::Mutex, two threads taking strict turns".into(),
        article: None,
        ns: measure(runs, once),
    }
}
// ANCHOR_END: contended

#[cfg(unix)]
fn system_call(runs: usize) -> Row {
    const CALLS: u64 = 200_000;
    Row {
        name: "non-blocking system call".into(),
        how: "getppid(), which the C library cannot answer from a cache".into(),
        article: None,
        ns: measure(runs, || {
            let start = Instant::now();
            for _ in 0..CALLS {
                // SAFETY: getppid has no preconditions and cannot fail.
                black_box(unsafe { libc::getppid() });
            }
            Ok(per_op(start.elapsed(), CALLS))
        }),
    }
}

#[cfg(not(unix))]
fn system_call(_runs: usize) -> Row {
    Row {
        name: "non-blocking system call".into(),
        how: "not measured on this OS".into(),
        article: None,
        ns: Err("not measured on this OS".into()),
    }
}

// ANCHOR: switch
/// Two threads ping-pong one byte through two pipes, both on one CPU where the OS lets
/// us pin them, so every hand-over is a real switch: one thread blocks in `read`, the
/// kernel runs the other. One round trip is two switches; the row is one of them,
/// with the `write` and `read` that cause it.
#[cfg(unix)]
fn context_switch(runs: usize) -> Row {
    const ROUND_TRIPS: u64 = 20_000;
    let cpu = pin::first_allowed_cpu();
    let once = || -> Result<f64, String> {
        let (mut ping_r, mut ping_w) = pipe()?;
        let (mut pong_r, mut pong_w) = pipe()?;
        let echo = thread::spawn(move || -> std::io::Result<()> {
            if let Some(cpu) = cpu {
                pin::to(cpu); // a thread of its own: no need to undo it
            }
            let mut byte = [0u8];
            for _ in 0..ROUND_TRIPS {
                ping_r.read_exact(&mut byte)?;
                pong_w.write_all(&byte)?;
            }
            Ok(())
        });
        let start = Instant::now();
        let mut byte = [7u8];
        for _ in 0..ROUND_TRIPS {
            ping_w.write_all(&byte).map_err(|e| e.to_string())?;
            pong_r.read_exact(&mut byte).map_err(|e| e.to_string())?;
        }
        let elapsed = start.elapsed();
        echo.join()
            .map_err(|_| "the echo thread panicked".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(per_op(elapsed, ROUND_TRIPS * 2))
    };
    // This thread is pinned only while it measures, in a thread of its own.
    let ns = thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Some(cpu) = cpu {
                    pin::to(cpu);
                }
                measure(runs, once)
            })
            .join()
            .unwrap_or_else(|_| Err("the measuring thread panicked".into()))
    });
    let how = match cpu {
        Some(cpu) => format!(
            "two threads ping-ponging a byte through pipes, both pinned to CPU {cpu}; per switch"
        ),
        None => "two threads ping-ponging a byte through pipes (this OS cannot pin them to \
                 one CPU, so it may run them on two); per switch"
            .into(),
    };
    Row {
        name: "thread context switch".into(),
        how,
        article: None,
        ns,
    }
}
// ANCHOR_END: switch

#[cfg(not(unix))]
fn context_switch(_runs: usize) -> Row {
    Row {
        name: "thread context switch".into(),
        how: "not measured on this OS".into(),
        article: None,
        ns: Err("not measured on this OS".into()),
    }
}

#[cfg(unix)]
fn pipe() -> Result<(File, File), String> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe succeeded, so both descriptors are open and now owned by us alone.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Pinning the calling thread to one CPU.
#[cfg(target_os = "linux")]
mod pin {
    /// The lowest CPU this process may run on.
    pub fn first_allowed_cpu() -> Option<usize> {
        // SAFETY: an all-zero cpu_set_t is a valid (empty) set for the kernel to fill.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a writable cpu_set_t of the size we pass.
        let rc =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if rc != 0 {
            return None;
        }
        // SAFETY: CPU_ISSET only reads inside the set.
        (0..libc::CPU_SETSIZE as usize).find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
    }

    /// Pins the calling thread to `cpu`; best effort (the row says which CPU was asked).
    pub fn to(cpu: usize) {
        // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET writes inside it, and
        // sched_setaffinity only reads the set we pass with its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

// NB: macOS has no way to pin a thread to a CPU (only affinity hints), so the two
// threads may run on two cores there, and the row says so.
#[cfg(all(unix, not(target_os = "linux")))]
mod pin {
    pub fn first_allowed_cpu() -> Option<usize> {
        None
    }

    pub fn to(_cpu: usize) {}
}

// ---------------------------------------------------------------------------------------
// Our own switches: stage 3 and stage 4.

fn coroutine_switch(runs: usize) -> Row {
    use stage3_generators::generator::{Generator, GeneratorState, Yielder};
    const ROUND_TRIPS: u64 = 1_000_000;
    let mut echo = Generator::new(|yielder: &Yielder<u64, u64>, mut x: u64| {
        loop {
            x = yielder.suspend(x);
        }
    });
    Row {
        name: "stage 3 resume + suspend".into(),
        how: "Generator::resume into a coroutine that suspends straight back: two stack \
              switches"
            .into(),
        article: None,
        ns: measure(runs, || {
            let start = Instant::now();
            for i in 0..ROUND_TRIPS {
                match echo.resume(black_box(i)) {
                    GeneratorState::Yielded(x) => black_box(x),
                    GeneratorState::Complete(never) => never,
                };
            }
            Ok(per_op(start.elapsed(), ROUND_TRIPS))
        }),
    }
}

fn task_wake(runs: usize) -> Row {
    const WAKES: u64 = 200_000;
    Row {
        name: "stage 4 task wake + poll".into(),
        how: "a spawned task that calls yield_now() in a loop: wake its own waker, return \
              Pending, be polled again"
            .into(),
        article: None,
        ns: measure(runs, || {
            let event_loop =
                stage4_async_await::EventLoop::new().map_err(|e| format!("event loop: {e}"))?;
            event_loop.block_on(async {
                let task = stage4_async_await::spawn(async {
                    let start = Instant::now();
                    for _ in 0..WAKES {
                        stage4_async_await::yield_now().await;
                    }
                    start.elapsed()
                });
                task.await
                    .map(|elapsed| per_op(elapsed, WAKES))
                    .map_err(|e| e.to_string())
            })
        }),
    }
}

// ---------------------------------------------------------------------------------------
// The network and the disk.

fn tcp_round_trip(runs: usize) -> Row {
    const ROUND_TRIPS: u64 = 2_000;
    let once = || -> Result<f64, String> {
        let err = |e: std::io::Error| format!("loopback: {e}");
        let listener = TcpListener::bind("127.0.0.1:0").map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        let echo = thread::spawn(move || -> std::io::Result<()> {
            let (mut stream, _) = listener.accept()?;
            stream.set_nodelay(true)?;
            let mut byte = [0u8];
            for _ in 0..ROUND_TRIPS {
                stream.read_exact(&mut byte)?;
                stream.write_all(&byte)?;
            }
            Ok(())
        });
        let mut stream = TcpStream::connect(addr).map_err(err)?;
        stream.set_nodelay(true).map_err(err)?;
        let mut byte = [1u8];
        let start = Instant::now();
        for _ in 0..ROUND_TRIPS {
            stream.write_all(&byte).map_err(err)?;
            stream.read_exact(&mut byte).map_err(err)?;
        }
        let elapsed = start.elapsed();
        echo.join()
            .map_err(|_| "the echo thread panicked".to_string())?
            .map_err(err)?;
        Ok(per_op(elapsed, ROUND_TRIPS))
    };
    Row {
        name: "loopback TCP round trip".into(),
        how: "one byte to an echo thread on 127.0.0.1 and back, TCP_NODELAY".into(),
        article: Some((
            "send a packet over the network (one way, where ours is a round trip)",
            "5.5 hours",
        )),
        ns: measure(runs, once),
    }
}

/// A scratch file for the disk rows, removed when dropped.
struct Scratch {
    path: PathBuf,
    ready: Result<(), String>,
}

const FILE_BYTES: u64 = 64 << 20;
const BLOCK: usize = 4096;

impl Scratch {
    fn new(dir: &Path) -> Scratch {
        let path = dir.join(format!(".latency-scratch-{}", std::process::id()));
        let ready = Scratch::fill(&path).map_err(|e| format!("{}: {e}", path.display()));
        Scratch { path, ready }
    }

    /// 64 MiB of bytes that no file system can compress or deduplicate, on the disk.
    fn fill(path: &Path) -> std::io::Result<()> {
        let mut file = File::create(path)?;
        let mut block = vec![0u8; 1 << 20];
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..FILE_BYTES >> 20 {
            for chunk in block.chunks_mut(8) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                chunk.copy_from_slice(&rng.to_le_bytes());
            }
            file.write_all(&block)?;
        }
        file.sync_all()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A 4 KiB-aligned buffer, as `O_DIRECT` wants.
struct Aligned(Box<[u8]>, usize);

impl Aligned {
    fn new() -> Aligned {
        let storage = vec![0u8; BLOCK * 2].into_boxed_slice();
        let offset = storage.as_ptr().align_offset(BLOCK);
        Aligned(storage, offset)
    }

    fn block(&mut self) -> &mut [u8] {
        &mut self.0[self.1..self.1 + BLOCK]
    }
}

/// A 4 KiB read at a random offset, from a file whose pages are not in the page cache.
fn uncached_read(scratch: &Scratch, runs: usize) -> Row {
    const READS: u64 = 200;
    let mut row = Row {
        name: "4 KiB read, not in cache".into(),
        how: String::new(),
        article: Some(("SSD random read", "1.7 days")),
        ns: Err(String::new()),
    };
    if let Err(error) = &scratch.ready {
        row.how = format!("could not write the scratch file: {error}");
        row.ns = Err(row.how.clone());
        return row;
    }
    let (file, how, mut evict) = match open_uncached(&scratch.path) {
        Ok(opened) => opened,
        Err(why) => {
            row.how = why.clone();
            row.ns = Err(why);
            return row;
        }
    };
    let mut buffer = Aligned::new();
    let mut rng = 0x1234_5678_9ABC_DEF1u64;
    row.how = how;
    row.ns = measure(runs, || {
        let mut total = Duration::ZERO;
        for _ in 0..READS {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let offset = (rng % (FILE_BYTES / BLOCK as u64)) * BLOCK as u64;
            evict(&file)?; // outside the timed part
            let start = Instant::now();
            read_at(&file, buffer.block(), offset).map_err(|e| format!("read: {e}"))?;
            total += start.elapsed();
        }
        Ok(per_op(total, READS))
    });
    row
}

type Evict = Box<dyn FnMut(&File) -> Result<(), String>>;

#[cfg(target_os = "linux")]
fn open_uncached(path: &Path) -> Result<(File, String, Evict), String> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    // O_DIRECT: the read goes to the device, past the page cache.
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => {
            let no_op: Evict = Box::new(|_| Ok(()));
            Ok((
                file,
                "pread of 4 KiB at a random 4 KiB-aligned offset of a 64 MiB file opened with \
                 O_DIRECT"
                    .into(),
                no_op,
            ))
        }
        // Some file systems (tmpfs, some overlays) refuse O_DIRECT: drop the file's pages
        // from the cache before every read instead.
        Err(direct) => {
            let file = File::open(path).map_err(|e| format!("open: {e}"))?;
            let fd = file.as_raw_fd();
            // SAFETY: fd is open for as long as `file` lives; advice has no memory effects.
            unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_RANDOM) };
            let evict: Evict = Box::new(|file: &File| {
                // SAFETY: as above.
                let rc = unsafe {
                    libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED)
                };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(format!("posix_fadvise: error {rc}"))
                }
            });
            Ok((
                file,
                format!(
                    "O_DIRECT refused here ({direct}), so posix_fadvise(DONTNEED) before each \
                     read; on a RAM-backed file system (tmpfs) nothing can be evicted: use --dir"
                ),
                evict,
            ))
        }
    }
}

#[cfg(target_os = "macos")]
fn open_uncached(path: &Path) -> Result<(File, String, Evict), String> {
    use std::os::unix::io::AsRawFd;
    let file = File::open(path).map_err(|e| format!("open: {e}"))?;
    // SAFETY: fd is open; F_NOCACHE only changes how the kernel caches this file's reads.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_NOCACHE, 1) } == -1 {
        return Err(format!(
            "fcntl(F_NOCACHE) refused: {}",
            std::io::Error::last_os_error()
        ));
    }
    let no_op: Evict = Box::new(|_| Ok(()));
    Ok((
        file,
        "pread of 4 KiB at a random 4 KiB-aligned offset of a 64 MiB file with F_NOCACHE set"
            .into(),
        no_op,
    ))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn open_uncached(_path: &Path) -> Result<(File, String, Evict), String> {
    Err("no way to bypass the page cache on this OS is known to this program".into())
}

#[cfg(unix)]
fn read_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(not(unix))]
fn read_at(_file: &File, _buffer: &mut [u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::Error::other("not on this OS"))
}

/// Overwrite 4 KiB and make it durable: `fsync` (macOS: `F_FULLFSYNC`, since its
/// `fsync` does not ask the drive to flush its own cache).
fn fsync(scratch: &Scratch, runs: usize) -> Row {
    const SYNCS: u64 = 20;
    let how = if cfg!(target_os = "macos") {
        "write 4 KiB over the start of the file, then fcntl(F_FULLFSYNC): macOS's fsync \
         stops at the drive's cache"
    } else {
        "write 4 KiB over the start of the file, then fsync"
    };
    let mut row = Row {
        name: "write 4 KiB + fsync".into(),
        how: how.into(),
        article: None,
        ns: Err(String::new()),
    };
    if let Err(error) = &scratch.ready {
        row.ns = Err(format!("could not write the scratch file: {error}"));
        return row;
    }
    let file = match OpenOptions::new().write(true).open(&scratch.path) {
        Ok(file) => file,
        Err(error) => {
            row.ns = Err(format!("open: {error}"));
            return row;
        }
    };
    let block = vec![0x5Au8; BLOCK];
    row.ns = measure(runs, || {
        let start = Instant::now();
        for _ in 0..SYNCS {
            write_at(&file, &block, 0).map_err(|e| format!("write: {e}"))?;
            full_sync(&file).map_err(|e| format!("fsync: {e}"))?;
        }
        Ok(per_op(start.elapsed(), SYNCS))
    });
    row
}

#[cfg(unix)]
fn write_at(file: &File, block: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, block, offset)
}

#[cfg(not(unix))]
fn write_at(_file: &File, _block: &[u8], _offset: u64) -> std::io::Result<()> {
    Err(std::io::Error::other("not on this OS"))
}

#[cfg(target_os = "macos")]
fn full_sync(file: &File) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: fd is open for the call; F_FULLFSYNC takes no argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_FULLFSYNC) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "macos"))]
fn full_sync(file: &File) -> std::io::Result<()> {
    file.sync_data()
}

// ---------------------------------------------------------------------------------------
// The table.

fn print(rows: &[Row], (ghz, measured): (f64, bool), caches: &Caches, runs: u32) {
    let clock = if measured {
        format!("{ghz:.2} GHz, measured with a chain of dependent additions")
    } else {
        format!("{ghz:.2} GHz, assumed: this CPU's clock could not be measured")
    };
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    shared::say!(
        "Machine: {cpus} CPUs, {} {}; clock {clock}; caches from {}.",
        std::env::consts::OS,
        std::env::consts::ARCH,
        caches.source
    );
    shared::say!(
        "Each row: the median of {} (each repeats the operation and divides), and \
         the fastest and slowest run, in ns. Then the article's scales: one ns as one second \
         (what its figures are; in brackets its own row, where it has one), and one CPU \
         cycle as one second (what its text says).",
        if runs == 1 {
            "one run".to_string()
        } else {
            format!("{runs} runs")
        }
    );
    shared::say!();
    let header = [
        "operation",
        "median",
        "fastest - slowest",
        "1 ns = 1 s (article)",
        "1 cycle = 1 s",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            // The article's figures are on the 1 ns = 1 s scale: side by side with ours.
            let article = row
                .article
                .map_or(String::new(), |(_, figure)| format!(" ({figure})"));
            match &row.ns {
                Ok(s) => vec![
                    row.name.clone(),
                    format!("{} ns", ns(s.median)),
                    format!("{} - {}", ns(s.min), ns(s.max)),
                    format!("{}{article}", human(s.median)),
                    human(s.median * ghz),
                ],
                Err(_) => vec![
                    row.name.clone(),
                    "not measured".into(),
                    String::new(),
                    article.trim().to_string(),
                    String::new(),
                ],
            }
        })
        .collect();
    print_markdown(&header, &body, &[0]);
    shared::say!();
    let pairs: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let (name, _) = row.article?;
            Some(format!("{} beside {name}", row.name))
        })
        .collect();
    shared::say!("The article's rows in brackets: {}.", pairs.join("; "));
    shared::say!(
        "The article's rows with no row here: disk seek (16.5 weeks; no spinning disk to \
         seek), packet Tokyo to Los Angeles (3.6 years; that needs the network)."
    );
    shared::say!();
    shared::say!("How each row was measured:");
    for row in rows {
        match &row.ns {
            Ok(_) => shared::say!("- {}: {}.", row.name, row.how),
            Err(why) => shared::say!("- {}: not measured: {why}.", row.name),
        }
    }
}

/// `0.98`, `12.3`, `1,234`: nanoseconds with as many digits as they deserve.
fn ns(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        thousands(value.round() as u64)
    }
}

/// Seconds on the article's human scale: `0.5 s`, `1.7 min`, `5.5 hours`, `1.7 days`,
/// `16.5 weeks`, `3.6 years`.
fn human(seconds: f64) -> String {
    let figure = |v: f64, unit: &str| {
        if v < 10.0 {
            format!("{v:.1} {unit}")
        } else {
            format!("{v:.0} {unit}")
        }
    };
    const MINUTE: f64 = 60.0;
    const HOUR: f64 = 60.0 * MINUTE;
    const DAY: f64 = 24.0 * HOUR;
    const WEEK: f64 = 7.0 * DAY;
    const YEAR: f64 = 365.25 * DAY;
    match seconds {
        s if s < MINUTE => figure(s, "s"),
        s if s < HOUR => figure(s / MINUTE, "min"),
        s if s < 2.0 * DAY => figure(s / HOUR, "hours"),
        s if s < 2.0 * WEEK => figure(s / DAY, "days"),
        s if s < YEAR => figure(s / WEEK, "weeks"),
        s => figure(s / YEAR, "years"),
    }
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}
