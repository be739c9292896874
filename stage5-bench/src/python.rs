//! The reference rows: the same benchmark in Python, asyncio tasks and `threading`
//! threads, when `python3` is on the `PATH`.
//!
//! The script is `reference.py` beside this file, built into the binary and handed to
//! `python3 -c`, so there is nothing to install or find. It prints the same cell line as
//! the Rust cells (see [`crate::cell`]).

use std::process::Command;
use std::time::Duration;

use shared::bench::SleepBench;

use crate::cell::{self, Run};

/// The script, as `python3 -c` runs it.
pub const SCRIPT: &str = include_str!("reference.py");

/// A Python model of the reference rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyModel {
    /// `asyncio` tasks on one event loop, `asyncio.sleep`.
    Asyncio,
    /// One `threading.Thread` per worker, `time.sleep`.
    Threads,
}

impl PyModel {
    /// The script's first argument.
    pub fn key(self) -> &'static str {
        match self {
            PyModel::Asyncio => "asyncio",
            PyModel::Threads => "threads",
        }
    }
}

/// `Python 3.11.7`, or `None` when there is no working `python3`.
pub fn version() -> Option<String> {
    let output = Command::new("python3").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && text.starts_with("Python")).then_some(text)
}

/// Runs one Python cell; it is killed, and reported as a failed cell, after `timeout`.
pub fn run_cell(model: PyModel, bench: &SleepBench, timeout: Duration) -> Run {
    let mut command = Command::new("python3");
    command.args(["-c", SCRIPT, model.key()]).args([
        bench.total.to_string(),
        bench.concurrency.to_string(),
        bench.sleep.as_millis().to_string(),
    ]);
    cell::run_child(&mut command, timeout)
}
