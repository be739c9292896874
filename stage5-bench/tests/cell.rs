//! The table's cell mode, run as the table runs it: a child process per cell.
//!
//! Tiny configurations only (tens of 1 ms sleeps), so this takes seconds.

use std::process::Command;
use std::time::Duration;

use shared::bench::SleepBench;
use stage5_bench::Model;
use stage5_bench::cell::{self, Outcome, Run};
use stage5_bench::python::{self, PyModel};

fn cell(model: &str, total: u64, concurrency: u64, sleep_ms: u64) -> Outcome {
    run(model, total, concurrency, sleep_ms).outcome
}

fn run(model: &str, total: u64, concurrency: u64, sleep_ms: u64) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_table"));
    command
        .arg("--cell")
        .arg(model)
        .args([total, concurrency, sleep_ms].map(|n| n.to_string()));
    cell::run_child(&mut command, Duration::from_secs(60))
}

#[test]
fn every_model_runs_a_tiny_cell_and_its_line_parses() {
    for model in Model::ALL {
        // 40 jobs on 10 workers: four rounds of 5 ms, so at least 20 ms.
        let run = run(model.key(), 40, 10, 5);
        let Outcome::Ran(measured) = run.outcome else {
            panic!("{}: {run:?}", model.key());
        };
        // The process did run, and the kernel said for how long, on the CPU.
        if cfg!(unix) {
            let cpu = run.cpu.unwrap_or_else(|| panic!("{model:?}: no CPU time"));
            assert!(
                cpu > Duration::ZERO && cpu < Duration::from_secs(30),
                "{cpu:?}"
            );
        }
        assert!(
            measured.elapsed >= Duration::from_millis(20),
            "{model:?}: {measured:?}"
        );
        assert!(
            measured.elapsed < Duration::from_secs(30),
            "{model:?}: {measured:?}"
        );
        // Several jobs per worker: no memory figure, rather than a wrong one.
        assert_eq!(measured.per_worker, None, "{model:?}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn one_job_each_gives_a_memory_figure_for_coroutines_and_tasks() {
    for model in [Model::Coroutines, Model::AsyncTasks] {
        let outcome = cell(model.key(), 2_000, 2_000, 20);
        let Outcome::Ran(measured) = &outcome else {
            panic!("{model:?}: {outcome:?}")
        };
        let bytes = measured
            .per_worker
            .unwrap_or_else(|| panic!("{model:?}: {outcome:?}"));
        // A task is a few hundred bytes, a coroutine a stack page or two: never nothing,
        // never its whole 64 KiB stack.
        assert!(bytes > 16.0 && bytes < 64.0 * 1024.0, "{model:?}: {bytes}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn threads_past_the_mapping_limit_are_refused_in_their_cell() {
    // A million threads need four million mappings: stage 0 refuses before spawning one.
    let outcome = cell("threads", 1_000_000, 1_000_000, 10);
    assert_eq!(
        outcome.headline(),
        "refused: vm.max_map_count",
        "{outcome:?}"
    );
    let Outcome::Refused { detail, .. } = outcome else {
        unreachable!()
    };
    assert!(detail.contains("1000000 threads"), "{detail}");
    assert!(detail.contains("sysctl -w vm.max_map_count"), "{detail}");
}

#[test]
fn a_bad_cell_says_so_instead_of_panicking() {
    let outcome = cell("fibers", 10, 10, 1);
    assert_eq!(outcome.headline(), "failed: usage", "{outcome:?}");
}

#[test]
fn python_cells_run_when_python_is_there() {
    let Some(version) = python::version() else {
        eprintln!("python3 not found: skipping the reference cells");
        return;
    };
    let bench = SleepBench {
        total: 40,
        concurrency: 10,
        sleep: Duration::from_millis(5),
    };
    for model in [PyModel::Asyncio, PyModel::Threads] {
        let outcome = python::run_cell(model, &bench, Duration::from_secs(60)).outcome;
        let seconds = outcome
            .seconds()
            .unwrap_or_else(|| panic!("{version} {model:?}: {outcome:?}"));
        assert!(seconds >= 0.020, "{model:?}: {seconds}");
    }
    // Python's threads meet the same mapping limit, and say so.
    let huge = SleepBench {
        total: 1_000_000,
        concurrency: 1_000_000,
        sleep: Duration::from_millis(10),
    };
    let outcome = python::run_cell(PyModel::Threads, &huge, Duration::from_secs(60)).outcome;
    if cfg!(target_os = "linux") {
        assert_eq!(
            outcome.headline(),
            "refused: vm.max_map_count",
            "{outcome:?}"
        );
    }
}

#[cfg(not(feature = "reference"))]
#[test]
fn a_reference_column_without_the_feature_says_how_to_get_it() {
    for runtime in ["tokio", "smol"] {
        let outcome = cell(runtime, 40, 10, 5);
        assert_eq!(outcome.headline(), "failed: error", "{outcome:?}");
        let Outcome::Failed { detail, .. } = outcome else {
            unreachable!()
        };
        assert!(detail.contains("--features reference"), "{detail}");
    }
}

#[cfg(feature = "reference")]
#[test]
fn the_reference_runtimes_run_the_same_cells() {
    for runtime in ["tokio", "smol"] {
        let Outcome::Ran(measured) = cell(runtime, 40, 10, 5) else {
            panic!("{runtime}: {:?}", cell(runtime, 40, 10, 5));
        };
        // Four rounds of 5 ms: the runtime really slept, job after job.
        assert!(
            measured.elapsed >= Duration::from_millis(20),
            "{runtime}: {measured:?}"
        );
        assert_eq!(measured.per_worker, None, "{runtime}");
        if cfg!(target_os = "linux") {
            let outcome = cell(runtime, 2_000, 2_000, 20);
            let bytes = match &outcome {
                Outcome::Ran(stage5_bench::Measured {
                    per_worker: Some(bytes),
                    ..
                }) => *bytes,
                _ => panic!("{runtime}: {outcome:?}"),
            };
            assert!(bytes > 16.0 && bytes < 64.0 * 1024.0, "{runtime}: {bytes}");
        }
    }
}
