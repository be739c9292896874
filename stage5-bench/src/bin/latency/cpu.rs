//! The rows that stay on one CPU: its clock, its caches and main memory, a mutex with and
//! without a second thread, and the cheapest system call.

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use stage5_bench::stats::Summary;

use crate::{Row, measure, per_op};

// The clock rate, for the "one cycle as one second" scale.

/// GHz, from a chain of dependent additions (one cycle each on every core we target),
/// and whether it was measured (`false`: 3 GHz assumed).
pub(crate) fn clock_ghz() -> (f64, bool) {
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

// Caches and memory: pointer chasing.

/// Cache sizes in bytes, as the OS reports them (data or unified caches, one core's).
pub(crate) struct Caches {
    pub(crate) l1: Option<usize>,
    pub(crate) l2: Option<usize>,
    pub(crate) l3: Option<usize>,
    pub(crate) source: &'static str,
}

#[cfg(target_os = "linux")]
pub(crate) fn caches() -> Caches {
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
pub(crate) fn caches() -> Caches {
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
pub(crate) fn caches() -> Caches {
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

pub(crate) fn cache_row(level: u8, cache: usize, caches: &Caches, runs: usize) -> Row {
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

pub(crate) fn memory_row(caches: &Caches, runs: usize) -> Row {
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

// Locks.

pub(crate) fn uncontended_mutex(runs: usize) -> Row {
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
pub(crate) fn contended_mutex(runs: usize) -> Row {
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
pub(crate) fn system_call(runs: usize) -> Row {
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
pub(crate) fn system_call(_runs: usize) -> Row {
    Row {
        name: "non-blocking system call".into(),
        how: "not measured on this OS".into(),
        article: None,
        ns: Err("not measured on this OS".into()),
    }
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}
