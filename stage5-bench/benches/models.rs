//! Threads, coroutines and async tasks on the article's sleep benchmark, at sizes that
//! finish quickly: 1,000 and 10,000 sleeps of 1 ms, one worker per sleep. The floor is
//! one sleep, 1 ms; the rest is the cost of creating, switching and ending workers.
//!
//! ```text
//! cargo bench -p stage5-bench --bench models -- --quick
//! ```
//!
//! Every sample runs the benchmark once; each model's own `sleep_bench` checks that every
//! job ran. The table binary (`--bin table`) has the large sizes and the memory figures.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use shared::bench::SleepBench;
use stage5_bench::Model;

fn models(c: &mut Criterion) {
    for tasks in [1_000u64, 10_000] {
        let bench = SleepBench {
            total: tasks,
            concurrency: tasks,
            sleep: Duration::from_millis(1),
        };
        let mut group = c.benchmark_group(format!("{tasks} sleeps of 1 ms"));
        // Ten thousand thread spawns take about a second: one run per sample.
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for model in Model::ALL {
            // A refused model (e.g. threads past the mapping limit) fails here, loudly.
            model
                .sleep_bench(&bench)
                .unwrap_or_else(|e| panic!("{}: {e}", model.label()));
            group.bench_function(BenchmarkId::from_parameter(model.label()), |b| {
                b.iter_custom(|iterations| {
                    (0..iterations)
                        .map(|_| model.sleep_bench(&bench).expect("every job ran"))
                        .sum()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, models);
criterion_main!(benches);
