//! Every stage's demo on the same workload: 100 requests at once to one embedded slow
//! server that answers each after 20 ms. The floor is one delay, 20 ms; the rest is what
//! each stage pays for threads, its event loop, stacks or tasks, and the connections.
//!
//! ```text
//! cargo bench -p stage5-bench --bench stages -- --quick
//! ```
//!
//! Each stage runs once and must verify all 100 responses before anything is timed, and
//! every timed run is verified again: a bench must never time a run that did less.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use shared::Config;
use shared::server::SlowServer;
use stage5_bench::{Stage, run_verified};

const REQUESTS: u64 = 100;
const DELAY: Duration = Duration::from_millis(20);

// ANCHOR: stages
fn stages(c: &mut Criterion) {
    let server = SlowServer::start(DELAY).expect("starting the embedded slow server");
    // Both ends of every connection live in this process.
    shared::limits::check_connections(2 * REQUESTS).expect("file descriptors for the bench");
    let config = Config::new(server.addr(), REQUESTS);
    let mut group = c.benchmark_group(format!(
        "{REQUESTS} requests, {} ms delay",
        DELAY.as_millis()
    ));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for stage in Stage::ALL {
        // Verified before it is timed.
        let report =
            run_verified(stage, &config).unwrap_or_else(|e| panic!("{}: {e}", stage.name()));
        assert_eq!(report.verified() as u64, REQUESTS, "{}", stage.name());
        group.bench_function(BenchmarkId::from_parameter(stage.name()), |b| {
            b.iter(|| {
                run_verified(stage, &config).unwrap_or_else(|e| panic!("{}: {e}", stage.name()))
            })
        });
    }
    group.finish();
}
// ANCHOR_END: stages

criterion_group!(benches, stages);
criterion_main!(benches);
