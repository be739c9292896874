//! The resume + suspend round trip of this crate's generator beside corosensei's, timed by
//! CPU time rather than wall time, so that a busy machine moves the figures less.
//!
//! `cargo run --release -p stage3-generators --example round_trip`
//!
//! Both run the same echo coroutine (it yields what it is sent), 20 million round trips
//! at a time, in turns, three times; the medians are printed. `benches/switch.rs` has the
//! same pair under criterion.

use std::hint::black_box;
use std::time::Duration;

const ROUND_TRIPS: u64 = 20_000_000;

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
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        a.push(time(|i| match ours.resume(i) {
            GeneratorState::Yielded(x) => x,
            GeneratorState::Complete(never) => never,
        }));
        b.push(time(|i| match theirs.resume(i) {
            corosensei::CoroutineResult::Yield(x) => x,
            corosensei::CoroutineResult::Return(never) => never,
        }));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ours, theirs) = (median(&mut a), median(&mut b));
    println!("resume + suspend round trip, CPU time, median of 3 x {ROUND_TRIPS}:");
    println!("  stage3-generators: {ours:.2} ns");
    println!("  corosensei:        {theirs:.2} ns");
    println!("  ratio:             {:.2}", ours / theirs);
}
