//! What one resume + suspend round trip costs: two context switches.
//!
//! `cargo bench -p stage3-generators --bench switch`
//!
//! The generator loops forever, yielding what it is sent; each iteration of the bench
//! resumes it once, so one iteration is a switch in and a switch out. Compare stage 4,
//! where "resuming" a compiler-built state machine is an ordinary function call.
//!
//! The same round trip on `corosensei`, a production stackful-coroutine crate, runs in
//! the same criterion run as the reference: what a switch costs when done well.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use stage3_generators::generator::{Generator, GeneratorState, Yielder};

fn round_trip(c: &mut Criterion) {
    let mut echo = Generator::new(|yielder: &Yielder<u64, u64>, mut x: u64| {
        loop {
            x = yielder.suspend(x);
        }
    });
    c.bench_function("resume + suspend round trip", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            match echo.resume(black_box(i)) {
                GeneratorState::Yielded(x) => black_box(x),
                GeneratorState::Complete(never) => never,
            }
        })
    });

    c.bench_function("create, run to completion and drop a generator", |b| {
        b.iter(|| {
            let mut once = Generator::new(|_: &Yielder<(), ()>, ()| 1u64);
            black_box(once.resume(()))
        })
    });
}

fn corosensei_round_trip(c: &mut Criterion) {
    use corosensei::{Coroutine, CoroutineResult, Yielder};
    let mut echo = Coroutine::new(|yielder: &Yielder<u64, u64>, mut x: u64| {
        loop {
            x = yielder.suspend(x);
        }
    });
    c.bench_function("corosensei: resume + suspend round trip", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            match echo.resume(black_box(i)) {
                CoroutineResult::Yield(x) => black_box(x),
                CoroutineResult::Return(never) => never,
            }
        })
    });
}

criterion_group!(benches, round_trip, corosensei_round_trip);
criterion_main!(benches);
