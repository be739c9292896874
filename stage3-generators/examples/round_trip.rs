//! The resume + suspend round trip of this crate's generator beside corosensei's, timed by
//! CPU time rather than wall time, so that a busy machine moves the figures less.
//!
//! `cargo run --release -p stage3-generators --example round_trip`
//!
//! Both run the same echo coroutine (it yields what it is sent), 20 million round trips
//! at a time, in turns, three times, and each keeps its median. That is done in five
//! processes, this example run again as its own child: where the kernel places the
//! caller's stack differs from one process to the next (address-space layout
//! randomisation), and our round trip is about 0.8 ns slower for some placements. Each
//! process's figures are printed, then the medians. `benches/switch.rs` has the same pair
//! under criterion.
//!
//! Each pair is timed twice: with `resume` inlined into the timing loop, the best case,
//! and behind a function that is not inlined, as a scheduler calls it (a `ret` after
//! every round trip, which a switch must not leave the CPU mispredicting).

use std::hint::black_box;
use std::process::Command;
use std::time::Duration;

const ROUND_TRIPS: u64 = 20_000_000;
const PROCESSES: usize = 5;
/// Set in the children: measure, print one line, and exit.
const CHILD: &str = "ROUND_TRIP_CHILD";

/// CPU time this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: an all-zero `timespec` is valid, and `clock_gettime` only writes into it.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the clock exists on Linux and macOS.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Nanoseconds of CPU time per round trip of `round_trip`, called `ROUND_TRIPS` times.
fn time(mut round_trip: impl FnMut(u64) -> u64) -> f64 {
    let start = cpu_time();
    let mut sum = 0u64;
    for i in 0..ROUND_TRIPS {
        sum = sum.wrapping_add(round_trip(black_box(i)));
    }
    let spent = cpu_time() - start;
    assert_eq!(sum, (0..ROUND_TRIPS).sum::<u64>(), "every value came back");
    spent.as_nanos() as f64 / ROUND_TRIPS as f64
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        let [a, b, c, d] = measure();
        shared::say!("{a} {b} {c} {d}");
        return;
    }
    shared::say!(
        "resume + suspend round trip, CPU time, median of 3 x {ROUND_TRIPS} in each of \
         {PROCESSES} processes;"
    );
    shared::say!("stage3-generators against corosensei, resume inlined and resume called:");
    shared::say!("  process  inlined: ours  corosensei  ratio   called: ours  corosensei  ratio");
    let mut columns: [Vec<f64>; 4] = Default::default();
    for process in 1..=PROCESSES {
        let figures = child();
        shared::say!("  {process:>7}{}", row(figures));
        for (column, figure) in columns.iter_mut().zip(figures) {
            column.push(figure);
        }
    }
    shared::say!(
        "  {:>7}{}",
        "median",
        row(columns.map(|mut c| median(&mut c)))
    );
}

/// One line of the table: two pairs of timings and their ratios.
fn row([a, b, c, d]: [f64; 4]) -> String {
    format!(
        "  {a:>10.2} ns  {b:>7.2} ns  {:>5.2}  {c:>10.2} ns  {d:>7.2} ns  {:>5.2}",
        a / b,
        c / d
    )
}

/// Runs this example again as a child process, and reads its four figures.
fn child() -> [f64; 4] {
    let output = Command::new(std::env::current_exe().expect("the path of this example"))
        .env(CHILD, "1")
        .output()
        .expect("running the example again as a child");
    let text = String::from_utf8_lossy(&output.stdout);
    let figures: Vec<f64> = text
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    match (output.status.success(), figures.as_slice()) {
        (true, &[a, b, c, d]) => [a, b, c, d],
        _ => panic!(
            "the child failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The medians of three timings of each round trip, ours and corosensei's in turns, first
/// inlined, then called.
fn measure() -> [f64; 4] {
    use stage3_generators::generator::{Generator, GeneratorState, Yielder};
    let mut ours = Generator::new(|yielder: &Yielder<u64, u64>, mut x: u64| {
        loop {
            x = yielder.suspend(x);
        }
    });
    let mut theirs =
        corosensei::Coroutine::new(|yielder: &corosensei::Yielder<u64, u64>, mut x: u64| {
            loop {
                x = yielder.suspend(x);
            }
        });
    #[inline(never)]
    fn called_ours<R>(generator: &mut Generator<u64, u64, R>, i: u64) -> u64 {
        match generator.resume(i) {
            GeneratorState::Yielded(x) => x,
            GeneratorState::Complete(_) => unreachable!("the echo never returns"),
        }
    }
    #[inline(never)]
    fn called_theirs<R>(coroutine: &mut corosensei::Coroutine<u64, u64, R>, i: u64) -> u64 {
        match coroutine.resume(i) {
            corosensei::CoroutineResult::Yield(x) => x,
            corosensei::CoroutineResult::Return(_) => unreachable!("the echo never returns"),
        }
    }
    let mut columns: [Vec<f64>; 4] = Default::default();
    for _ in 0..3 {
        columns[0].push(time(|i| match ours.resume(i) {
            GeneratorState::Yielded(x) => x,
            GeneratorState::Complete(never) => never,
        }));
        columns[1].push(time(|i| match theirs.resume(i) {
            corosensei::CoroutineResult::Yield(x) => x,
            corosensei::CoroutineResult::Return(never) => never,
        }));
        columns[2].push(time(|i| called_ours(&mut ours, i)));
        columns[3].push(time(|i| called_theirs(&mut theirs, i)));
    }
    columns.map(|mut column| median(&mut column))
}
