//! The article's async benchmark on stage 4's runtime: `total` tasks that each sleep
//! 10 ms, all at once, on one thread. The floor is 10 ms; whatever is above it is the
//! runtime's cost (spawning, waking, timers, task teardown).
//!
//! ```text
//! cargo bench -p stage4-async-await --bench sleep             # full run
//! cargo bench -p stage4-async-await --bench sleep -- --quick  # a quick look
//! ```
//!
//! Each sample runs `sleep_bench` once; `sleep_bench` itself checks that every job ran.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use stage4_async_await::sleep_bench;

fn sleeping_tasks(c: &mut Criterion) {
    let sleep = Duration::from_millis(10);
    let mut group = c.benchmark_group("sleep_bench 10 ms");
    group.sample_size(10);
    for tasks in [10_000u64, 100_000, 1_000_000] {
        group.bench_function(BenchmarkId::from_parameter(tasks), |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| sleep_bench(tasks, tasks, sleep).expect("every job ran"))
                    .sum()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, sleeping_tasks);
criterion_main!(benches);
