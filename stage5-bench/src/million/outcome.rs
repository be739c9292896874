//! What a run measured: the outcome the report and the picture are made of.

use std::collections::BTreeMap;
use std::time::Duration;

use super::kernel::Snapshot;

/// What the run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Stage 4's client against the slow server, every answer verified.
    Run,
    /// Bare connects and accepts, same layout: the floor.
    Floor,
}

/// Memory at one moment of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryAt {
    /// `all open`, `all waiting`.
    pub label: String,
    /// Connections open (the clients' count).
    pub connections: u64,
    /// Resident memory of the client processes, summed.
    pub client_rss: Option<u64>,
    /// Resident memory of the server processes, summed.
    pub server_rss: Option<u64>,
    /// The kernel's counters.
    pub kernel: Option<Snapshot>,
    /// CPU time the client processes have used so far, summed.
    pub client_cpu: Option<Duration>,
    /// CPU time the server processes have used so far, summed.
    pub server_cpu: Option<Duration>,
}

/// One point of the run's timeline, every [`REPORT_EVERY`](super::REPORT_EVERY).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the `open` command.
    pub at: f64,
    /// Connections the clients have open.
    pub opened: u64,
    /// Connections the servers have accepted.
    pub accepted: u64,
    /// Requests waiting in the servers.
    pub waiting: u64,
    /// Answers verified by the clients.
    pub verified: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// `None` for a run that was not started (refused).
    pub mode: Option<Mode>,
    /// Connections asked for.
    pub connections: u64,
    /// Client processes and server shards.
    pub processes: (usize, usize),
    /// The first and last source address.
    pub sources: (String, String),
    /// Connections the clients opened.
    pub opened: u64,
    /// From the `open` command until every connection was open on both sides.
    pub open_time: Option<Duration>,
    /// Connections the servers held open at once, before the start signal.
    pub open_at_once: u64,
    /// Requests the servers held waiting at once (`None`: the servers do not count
    /// them), and when, after the start signal.
    pub waiting_at_once: Option<(u64, Duration)>,
    /// The sum of each shard's own peak of waiting requests (an upper bound).
    pub shard_peaks_waiting: Option<u64>,
    /// When every request had reached its server (waiting or answered, by the servers'
    /// counts), after the start signal.
    pub all_arrived: Option<Duration>,
    /// Answers verified.
    pub verified: u64,
    /// From the start signal until every answer was read.
    pub answer_time: Option<Duration>,
    /// From the first process started to the last one stopped.
    pub total: Duration,
    /// The delay of the servers.
    pub delay: Duration,
    /// Connections or requests that failed, by `step_cause`.
    pub failures: BTreeMap<String, u64>,
    /// Memory before opening, with every connection open, and with every request waiting.
    pub memory: Vec<MemoryAt>,
    /// The timeline.
    pub samples: Vec<Sample>,
    /// The size of one connection's future (stage 4 boxes it as the task).
    pub task_future_bytes: Option<u64>,
    /// Peak of socket buffer pages (`TCP: mem`, the whole machine) seen while running.
    pub tcp_pages_peak: Option<u64>,
    /// `net.ipv4.tcp_mem`, in pages: pressure from the second, the limit the third.
    pub tcp_mem: Option<[u64; 3]>,
    /// Limits met and other warnings, as they were printed.
    pub warnings: Vec<String>,
    /// Why the run ended early, if it did.
    pub stopped: Option<String>,
    /// Whether it ended on Ctrl-C (or SIGTERM, SIGHUP).
    pub interrupted: bool,
}

impl Outcome {
    /// Whether the run did all it set out to: every connection open, every request
    /// verified (and, for the real run, every request waiting at once where the servers
    /// count them).
    pub fn complete(&self) -> bool {
        let all = self.opened == self.connections && self.failures.is_empty();
        let proven = match (self.mode, self.waiting_at_once) {
            (Some(Mode::Run), Some((waiting, _))) => waiting == self.connections,
            _ => true,
        };
        let verified = self.mode != Some(Mode::Run) || self.verified == self.connections;
        all && proven && verified && self.stopped.is_none()
    }
}
