//! One cell of the table: a model at one size, run in a child process of its own.
//!
//! A fresh process per cell keeps the figures honest (memory an earlier cell freed is
//! not there to be reused, the allocator starts cold) and keeps the table standing when
//! a cell cannot run: the child prints one line, `ok ...`, `refused ...` or
//! `failed ...`, and whatever else happens to it (a crash, a hang) becomes a cell that
//! says so. The Python reference cells print the same line.

use std::fmt;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use shared::Error;

use crate::Measured;
use crate::stats::Summary;

/// How a cell ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The benchmark ran to the end.
    Ran(Measured),
    /// An OS limit stopped it before or while it started its workers.
    Refused {
        /// The limit, short enough for a table cell, e.g. `vm.max_map_count`.
        limit: String,
        /// The whole message, with the numbers and the fix.
        detail: String,
    },
    /// Anything else: an error, a crash, a timeout.
    Failed {
        /// What happened, short, e.g. `timeout` or `crashed`.
        what: String,
        /// The whole story.
        detail: String,
    },
}

impl Outcome {
    // ANCHOR: outcome_of
    /// The outcome of [`Model::measure`](crate::Model::measure): an OS limit becomes a
    /// refused cell that names it, any other error a failed one.
    pub fn of(result: Result<Measured, Error>) -> Outcome {
        match result {
            Ok(measured) => Outcome::Ran(measured),
            Err(error @ Error::Limit { .. }) => Outcome::Refused {
                limit: limit_name(&error).to_string(),
                detail: error.to_string(),
            },
            Err(error) => Outcome::Failed {
                what: "error".to_string(),
                detail: error.to_string(),
            },
        }
    }
    // ANCHOR_END: outcome_of

    /// What the table shows: `0.402 s`, `refused: vm.max_map_count`, `failed: timeout`.
    pub fn cell_text(&self) -> String {
        match self {
            Outcome::Ran(measured) => seconds(measured.elapsed),
            Outcome::Refused { limit, .. } => format!("refused: {limit}"),
            Outcome::Failed { what, .. } => format!("failed: {what}"),
        }
    }

    /// Wall seconds, if it ran.
    pub fn seconds(&self) -> Option<f64> {
        match self {
            Outcome::Ran(measured) => Some(measured.elapsed.as_secs_f64()),
            _ => None,
        }
    }

    /// Finds the outcome line in what a child printed (the last line that is one).
    pub fn find_in(stdout: &str) -> Option<Outcome> {
        stdout.lines().rev().find_map(|line| line.parse().ok())
    }
}

// ANCHOR: runs
/// The runs of one cell, each in a fresh process: what the table shows is their median,
/// with the spread beside it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Runs(pub Vec<Outcome>);

impl Runs {
    /// Whether another run can tell us anything: not after a refusal or a failure (a
    /// limit refuses every time, and a cell that crashed once is reported as such).
    pub fn wants_more(&self) -> bool {
        self.0.iter().all(|run| matches!(run, Outcome::Ran(_)))
    }

    /// The wall times of the runs that ran, in seconds.
    pub fn time(&self) -> Option<Summary> {
        let seconds: Vec<f64> = self.0.iter().filter_map(Outcome::seconds).collect();
        Summary::of(&seconds)
    }

    /// What the cell stands for: the median time and median memory per worker when every
    /// run ran, else the first run that did not.
    pub fn outcome(&self) -> Option<Outcome> {
        if let Some(other) = self.0.iter().find(|run| !matches!(run, Outcome::Ran(_))) {
            return Some(other.clone());
        }
        let time = self.time()?;
        let bytes: Vec<f64> = self
            .0
            .iter()
            .filter_map(|run| match run {
                Outcome::Ran(measured) => measured.per_worker,
                _ => None,
            })
            .collect();
        // A memory figure only if every run had one: a median of some would pick.
        let per_worker = (bytes.len() == self.0.len())
            .then(|| Summary::of(&bytes).map(|s| s.median))
            .flatten();
        Some(Outcome::Ran(Measured {
            elapsed: Duration::from_secs_f64(time.median),
            per_worker,
        }))
    }

    /// `10.128 s (0.4%)`: the median and the spread of the runs; a single run has no
    /// spread to show; a cell that did not run says why in a word.
    pub fn cell_text(&self) -> String {
        match (self.outcome(), self.time()) {
            (Some(Outcome::Ran(measured)), Some(time)) if time.runs > 1 => {
                format!("{} ({})", seconds(measured.elapsed), time.spread_text())
            }
            (Some(outcome), _) => outcome.cell_text(),
            (None, _) => "not run".to_string(),
        }
    }
}
// ANCHOR_END: runs

/// The limit an [`Error::Limit`] names, in a few words.
pub fn limit_name(error: &Error) -> &'static str {
    let Error::Limit { limit, .. } = error else {
        return "not a limit";
    };
    if limit.contains("max_map_count") {
        "vm.max_map_count"
    } else if limit.contains("RLIMIT_NOFILE") {
        "RLIMIT_NOFILE"
    } else if limit.contains("thread limit") {
        "thread limit"
    } else if limit.contains("memory") {
        "memory"
    } else {
        "OS limit"
    }
}

/// The line a cell prints, e.g. `ok elapsed_s=0.402117 per_worker_bytes=4850.3`,
/// `refused vm.max_map_count: 100000 threads need ...`, `failed error: ...`.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ran(measured) => {
                write!(f, "ok elapsed_s={:.6}", measured.elapsed.as_secs_f64())?;
                if let Some(bytes) = measured.per_worker {
                    write!(f, " per_worker_bytes={bytes:.1}")?;
                }
                Ok(())
            }
            Outcome::Refused { limit, detail } => {
                write!(f, "refused {limit}: {}", one_line(detail))
            }
            Outcome::Failed { what, detail } => write!(f, "failed {what}: {}", one_line(detail)),
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;

    fn from_str(line: &str) -> Result<Outcome, String> {
        let bad = || format!("not a cell line: {line:?}");
        let (word, rest) = line.trim().split_once(' ').ok_or_else(bad)?;
        match word {
            "ok" => {
                let (mut elapsed, mut per_worker) = (None, None);
                for field in rest.split_whitespace() {
                    let (key, value) = field.split_once('=').ok_or_else(bad)?;
                    let value: f64 = value.parse().map_err(|_| bad())?;
                    if !value.is_finite() || value < 0.0 {
                        return Err(bad());
                    }
                    match key {
                        "elapsed_s" => elapsed = Some(Duration::from_secs_f64(value)),
                        "per_worker_bytes" => per_worker = Some(value),
                        _ => return Err(bad()),
                    }
                }
                let elapsed = elapsed.ok_or_else(bad)?;
                Ok(Outcome::Ran(Measured {
                    elapsed,
                    per_worker,
                }))
            }
            "refused" | "failed" => {
                let (short, detail) = rest.split_once(':').ok_or_else(bad)?;
                let (short, detail) = (short.trim().to_string(), detail.trim().to_string());
                Ok(if word == "refused" {
                    Outcome::Refused {
                        limit: short,
                        detail,
                    }
                } else {
                    Outcome::Failed {
                        what: short,
                        detail,
                    }
                })
            }
            _ => Err(bad()),
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `10.140 s`.
pub fn seconds(elapsed: Duration) -> String {
    format!("{:.3} s", elapsed.as_secs_f64())
}

/// `291 B`, `4.73 KiB`, `1.20 MiB`.
pub fn bytes(bytes: f64) -> String {
    if bytes < 1024.0 {
        format!("{bytes:.0} B")
    } else if bytes < 1024.0 * 1024.0 {
        format!("{:.2} KiB", bytes / 1024.0)
    } else {
        format!("{:.2} MiB", bytes / (1024.0 * 1024.0))
    }
}

// ANCHOR: run_child
/// Runs `command` (a cell in a child process) and reads its outcome line; a child that
/// prints none, crashes, or outlives `timeout` (it is killed) becomes a failed cell.
pub fn run_child(command: &mut Command, timeout: Duration) -> Outcome {
    let failed = |what: &str, detail: String| Outcome::Failed {
        what: what.to_string(),
        detail,
    };
    let mut child = match command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => return failed("spawn", format!("could not start {command:?}: {error}")),
    };
    // Read both pipes while waiting, so a chatty child cannot block on a full pipe.
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                // Only this child, which we started; then reap it.
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("no result within {} s; killed", timeout.as_secs()));
            }
            Err(error) => break Err(format!("waiting for the cell: {error}")),
        }
    };
    let status = match status {
        Ok(status) => status,
        // NB: the readers are left behind, not joined: a grandchild the cell started
        // could hold the pipes open for as long as it likes.
        Err(detail) => return failed("timeout", detail),
    };
    let join = |reader: Option<thread::JoinHandle<String>>| {
        reader.and_then(|r| r.join().ok()).unwrap_or_default()
    };
    let (stdout, stderr) = (join(stdout), join(stderr));
    Outcome::find_in(&stdout).unwrap_or_else(|| failed(ended(status), last_words(&stderr, status)))
}
// ANCHOR_END: run_child

fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn ended(status: ExitStatus) -> &'static str {
    #[cfg(unix)]
    if std::os::unix::process::ExitStatusExt::signal(&status).is_some() {
        return "crashed";
    }
    if status.success() {
        "no result"
    } else {
        "exit"
    }
}

fn last_words(stderr: &str, status: ExitStatus) -> String {
    let last = stderr.lines().rev().find(|line| !line.trim().is_empty());
    match last {
        Some(line) => format!("{status}: {}", line.trim()),
        None => format!("{status}, nothing on stderr"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_back_to_what_was_printed() {
        let cells = [
            Outcome::Ran(Measured {
                elapsed: Duration::from_micros(402_117),
                per_worker: Some(4850.5),
            }),
            Outcome::Ran(Measured {
                elapsed: Duration::from_secs(10),
                per_worker: None,
            }),
            Outcome::Refused {
                limit: "vm.max_map_count".into(),
                detail: "100000 threads need about 402000 memory mappings".into(),
            },
            Outcome::Failed {
                what: "error".into(),
                detail: "timed out: no answer: really".into(),
            },
        ];
        for cell in cells {
            let line = cell.to_string();
            assert_eq!(line.parse::<Outcome>(), Ok(cell.clone()), "{line}");
        }
    }

    #[test]
    fn anything_else_is_not_a_cell_line() {
        for line in [
            "",
            "ok",
            "ok elapsed_s=x",
            "ok per_worker_bytes=3",
            "ok elapsed_s=-1",
            "nope 3",
            "refused no colon",
        ] {
            assert!(line.parse::<Outcome>().is_err(), "{line:?}");
        }
        let stdout = "warming up\nok elapsed_s=1.5\n";
        assert_eq!(
            Outcome::find_in(stdout).and_then(|o| o.seconds()),
            Some(1.5)
        );
    }

    #[test]
    fn a_limit_is_refused_and_named() {
        let error = Error::Limit {
            limit: "memory-mapping limit (vm.max_map_count = 65530, 30 in use)".into(),
            asked: "100000 threads need about 402000 memory mappings".into(),
            fix: "Use at most 15875 threads.".into(),
        };
        let cell = Outcome::of(Err(error));
        assert_eq!(cell.cell_text(), "refused: vm.max_map_count");
        let Outcome::Refused { detail, .. } = &cell else {
            unreachable!()
        };
        assert!(detail.contains("Use at most 15875 threads"), "{detail}");
        let other = Outcome::of(Err(Error::Other("boom".into())));
        assert_eq!(other.cell_text(), "failed: error");
    }

    #[test]
    fn runs_show_their_median_and_spread_or_the_run_that_did_not_run() {
        let ran = |ms: u64, bytes: Option<f64>| {
            Outcome::Ran(Measured {
                elapsed: Duration::from_millis(ms),
                per_worker: bytes,
            })
        };
        let three = Runs(vec![
            ran(1_020, Some(300.0)),
            ran(1_000, Some(290.0)),
            ran(1_100, Some(310.0)),
        ]);
        assert!(three.wants_more());
        assert_eq!(three.cell_text(), "1.020 s (9.8%)");
        assert_eq!(three.outcome(), Some(ran(1_020, Some(300.0))));
        // One run without a memory figure: the cell has none rather than a biased one.
        let mixed = Runs(vec![ran(1_000, Some(290.0)), ran(1_000, None)]);
        assert_eq!(mixed.outcome(), Some(ran(1_000, None)));
        assert_eq!(Runs(vec![ran(500, None)]).cell_text(), "0.500 s");

        let refused = Outcome::Refused {
            limit: "vm.max_map_count".into(),
            detail: "too many".into(),
        };
        let runs = Runs(vec![refused.clone()]);
        assert!(!runs.wants_more());
        assert_eq!(runs.cell_text(), "refused: vm.max_map_count");
        let crashed = Outcome::Failed {
            what: "crashed".into(),
            detail: "SIGSEGV".into(),
        };
        let runs = Runs(vec![ran(1_000, None), crashed.clone(), ran(1_000, None)]);
        assert_eq!(runs.outcome(), Some(crashed));
        assert_eq!(runs.cell_text(), "failed: crashed");
        assert_eq!(Runs::default().cell_text(), "not run");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(291.4), "291 B");
        assert_eq!(bytes(4850.0), "4.74 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.00 MiB");
        assert_eq!(seconds(Duration::from_millis(10_140)), "10.140 s");
    }

    #[cfg(unix)]
    #[test]
    fn a_child_that_crashes_hangs_or_says_nothing_is_a_failed_cell() {
        let sh = |script: &str| {
            let mut command = Command::new("sh");
            command.args(["-c", script]);
            command
        };
        let crashed = run_child(
            &mut sh("echo dying >&2; kill -SEGV $$"),
            Duration::from_secs(10),
        );
        assert_eq!(crashed.cell_text(), "failed: crashed", "{crashed:?}");
        let Outcome::Failed { detail, .. } = crashed else {
            unreachable!()
        };
        assert!(detail.contains("dying"), "{detail}");

        let started = Instant::now();
        let hung = run_child(&mut sh("exec sleep 30"), Duration::from_millis(300));
        assert_eq!(hung.cell_text(), "failed: timeout", "{hung:?}");
        assert!(started.elapsed() < Duration::from_secs(10));

        let silent = run_child(&mut sh("exit 3"), Duration::from_secs(10));
        assert_eq!(silent.cell_text(), "failed: exit", "{silent:?}");

        let ok = run_child(&mut sh("echo 'ok elapsed_s=0.25'"), Duration::from_secs(10));
        assert_eq!(ok.seconds(), Some(0.25));

        let missing = run_child(
            &mut Command::new("/nonexistent/cell"),
            Duration::from_secs(1),
        );
        assert_eq!(missing.cell_text(), "failed: spawn");
    }
}
