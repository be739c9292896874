//! One cell of the table: a model at one size, run in a child process of its own.
//!
//! A fresh process per cell keeps the figures honest (memory an earlier cell freed is
//! not there to be reused, the allocator starts cold) and keeps the table standing when
//! a cell cannot run: the child prints one line, `ok ...`, `refused ...` or
//! `failed ...`, and whatever else happens to it (a crash, a hang) becomes a cell that
//! says so. The Python reference cells print the same line.

use std::fmt;
use std::io::{self, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
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

    /// What a table cell shows: `0.402` (seconds, the unit is in the caption), `refused`
    /// or `failed`, the reason in a note below the table.
    pub fn cell_text(&self) -> String {
        match self {
            Outcome::Ran(measured) => format!("{:.3}", measured.elapsed.as_secs_f64()),
            Outcome::Refused { .. } => "refused".to_string(),
            Outcome::Failed { .. } => "failed".to_string(),
        }
    }

    /// The outcome in a few words, as a progress line shows it: `0.402 s`,
    /// `refused: vm.max_map_count`, `failed: timeout`.
    pub fn headline(&self) -> String {
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
/// One run of a cell, in a process of its own: what it printed, and the CPU time the
/// process used.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The cell's line, or what became of the child.
    pub outcome: Outcome,
    /// User + system CPU time of the whole child process, start-up included, as the
    /// kernel reported it when the child was reaped; `None` where it cannot say (not on
    /// Unix, or the child never started or was killed).
    pub cpu: Option<Duration>,
}

/// The runs of one cell, each in a fresh process: what the table shows is their median,
/// with the spread beside it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Runs(pub Vec<Run>);

impl Runs {
    /// Whether another run can tell us anything: not after a refusal or a failure (a
    /// limit refuses every time, and a cell that crashed once is reported as such).
    pub fn wants_more(&self) -> bool {
        self.0
            .iter()
            .all(|run| matches!(run.outcome, Outcome::Ran(_)))
    }

    /// The wall times of the runs that ran, in seconds.
    pub fn time(&self) -> Option<Summary> {
        let seconds: Vec<f64> = self.0.iter().filter_map(|r| r.outcome.seconds()).collect();
        Summary::of(&seconds)
    }

    /// The CPU times (user + system) of the runs, in seconds: only when every run ran
    /// and has one, as a median of some would pick.
    pub fn cpu(&self) -> Option<Summary> {
        let ran = |run: &Run| matches!(run.outcome, Outcome::Ran(_));
        let seconds: Option<Vec<f64>> = self
            .0
            .iter()
            .map(|run| run.cpu.filter(|_| ran(run)).map(|cpu| cpu.as_secs_f64()))
            .collect();
        Summary::of(&seconds?)
    }

    /// What the cell stands for: the median time and median memory per worker when every
    /// run ran, else the first run that did not.
    pub fn outcome(&self) -> Option<Outcome> {
        let outcomes = self.0.iter().map(|run| &run.outcome);
        if let Some(other) = outcomes.clone().find(|o| !matches!(o, Outcome::Ran(_))) {
            return Some(other.clone());
        }
        let time = self.time()?;
        let bytes: Vec<f64> = outcomes
            .filter_map(|outcome| match outcome {
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

    /// `10.128 (0.4%)`: the median wall time in seconds and the spread of the runs (a
    /// single run has no spread to show); a cell that did not run says so in a word.
    pub fn cell_text(&self) -> String {
        self.text(self.time())
    }

    /// The same for the CPU time: `0.312 (3.2%)`, or `n/a` where it was not measured.
    pub fn cpu_text(&self) -> String {
        self.text(self.cpu())
    }

    fn text(&self, figure: Option<Summary>) -> String {
        match (self.outcome(), figure) {
            (Some(Outcome::Ran(_)), Some(s)) if s.runs > 1 => {
                format!("{:.3} ({})", s.median, s.spread_text())
            }
            (Some(Outcome::Ran(_)), Some(s)) => format!("{:.3}", s.median),
            (Some(Outcome::Ran(_)), None) => "n/a".to_string(),
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
/// The run also says how much CPU time the child used.
pub fn run_child(command: &mut Command, timeout: Duration) -> Run {
    let failed = |what: &str, detail: String| Run {
        outcome: Outcome::Failed {
            what: what.to_string(),
            detail,
        },
        cpu: None,
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
    let (status, cpu) = loop {
        match reap(&mut child) {
            Ok(Some(reaped)) => break reaped,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                // Only this child, which we started and have not reaped; then reap it.
                let _ = child.kill();
                let _ = child.wait();
                // NB: the readers are left behind, not joined: a grandchild the cell
                // started could hold the pipes open for as long as it likes.
                let detail = format!("no result within {} s; killed", timeout.as_secs());
                return failed("timeout", detail);
            }
            Err(error) => return failed("wait", format!("waiting for the cell: {error}")),
        }
    };
    let join = |reader: Option<thread::JoinHandle<String>>| {
        reader.and_then(|r| r.join().ok()).unwrap_or_default()
    };
    let (stdout, stderr) = (join(stdout), join(stderr));
    match Outcome::find_in(&stdout) {
        Some(outcome) => Run { outcome, cpu },
        None => failed(ended(status), last_words(&stderr, status)),
    }
}
// ANCHOR_END: run_child

/// The child's exit status and the CPU time it used (user + system), once it has exited;
/// `None` while it runs. `wait4` is `waitpid` that also returns the child's resource
/// usage, which `Child::try_wait` does not give. Once it has reaped the child, `child`
/// must not be waited for or killed again: its pid may belong to another process by then.
#[cfg(unix)]
fn reap(child: &mut Child) -> io::Result<Option<(ExitStatus, Option<Duration>)>> {
    use std::os::unix::process::ExitStatusExt;

    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a C struct of integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals, valid for writes during the call;
        // `pid` is our child and not yet reaped, as only this function reaps it and the
        // caller stops calling once it has.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        match reaped {
            0 => return Ok(None),
            -1 => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
            _ => {
                let cpu = time(usage.ru_utime) + time(usage.ru_stime);
                return Ok(Some((ExitStatus::from_raw(status), Some(cpu))));
            }
        }
    }
}

/// Where there is no `wait4`, the status alone.
#[cfg(not(unix))]
fn reap(child: &mut Child) -> io::Result<Option<(ExitStatus, Option<Duration>)>> {
    Ok(child.try_wait()?.map(|status| (status, None)))
}

#[cfg(unix)]
fn time(t: libc::timeval) -> Duration {
    let seconds = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u64::try_from(t.tv_usec).unwrap_or(0);
    Duration::from_secs(seconds) + Duration::from_micros(micros)
}

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
        assert_eq!(cell.headline(), "refused: vm.max_map_count");
        assert_eq!(cell.cell_text(), "refused");
        let Outcome::Refused { detail, .. } = &cell else {
            unreachable!()
        };
        assert!(detail.contains("Use at most 15875 threads"), "{detail}");
        let other = Outcome::of(Err(Error::Other("boom".into())));
        assert_eq!(other.headline(), "failed: error");
    }

    #[test]
    fn runs_show_their_median_and_spread_or_the_run_that_did_not_run() {
        let ran = |ms: u64, bytes: Option<f64>| {
            Outcome::Ran(Measured {
                elapsed: Duration::from_millis(ms),
                per_worker: bytes,
            })
        };
        let run = |outcome: &Outcome, cpu_ms: Option<u64>| Run {
            outcome: outcome.clone(),
            cpu: cpu_ms.map(Duration::from_millis),
        };
        let three = Runs(vec![
            run(&ran(1_020, Some(300.0)), Some(310)),
            run(&ran(1_000, Some(290.0)), Some(300)),
            run(&ran(1_100, Some(310.0)), Some(320)),
        ]);
        assert!(three.wants_more());
        assert_eq!(three.cell_text(), "1.020 (9.8%)");
        assert_eq!(three.cpu_text(), "0.310 (6.5%)");
        assert_eq!(three.outcome(), Some(ran(1_020, Some(300.0))));
        // One run without a memory figure: the cell has none rather than a biased one;
        // the same for the CPU time.
        let mixed = Runs(vec![
            run(&ran(1_000, Some(290.0)), Some(5)),
            run(&ran(1_000, None), None),
        ]);
        assert_eq!(mixed.outcome(), Some(ran(1_000, None)));
        assert_eq!((mixed.cpu(), mixed.cpu_text()), (None, "n/a".to_string()));
        let one = Runs(vec![run(&ran(500, None), Some(12))]);
        assert_eq!(
            (one.cell_text(), one.cpu_text()),
            ("0.500".into(), "0.012".into())
        );

        let refused = Outcome::Refused {
            limit: "vm.max_map_count".into(),
            detail: "too many".into(),
        };
        let runs = Runs(vec![run(&refused, Some(1))]);
        assert!(!runs.wants_more());
        assert_eq!(
            (runs.cell_text(), runs.cpu_text()),
            ("refused".into(), "refused".into())
        );
        assert_eq!(refused.headline(), "refused: vm.max_map_count");
        let crashed = Outcome::Failed {
            what: "crashed".into(),
            detail: "SIGSEGV".into(),
        };
        let runs = Runs(vec![
            run(&ran(1_000, None), Some(1)),
            run(&crashed, None),
            run(&ran(1_000, None), Some(1)),
        ]);
        assert_eq!(runs.outcome(), Some(crashed.clone()));
        assert_eq!((runs.cell_text(), runs.cpu()), ("failed".into(), None));
        assert_eq!(crashed.headline(), "failed: crashed");
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
        let crashed = run_child(
            &mut sh("echo dying >&2; kill -SEGV $$"),
            Duration::from_secs(10),
        );
        assert_eq!(crashed.outcome.headline(), "failed: crashed", "{crashed:?}");
        let Outcome::Failed { detail, .. } = crashed.outcome else {
            unreachable!()
        };
        assert!(detail.contains("dying"), "{detail}");

        let started = Instant::now();
        let hung = run_child(&mut sh("exec sleep 30"), Duration::from_millis(300));
        assert_eq!(hung.outcome.headline(), "failed: timeout", "{hung:?}");
        assert!(started.elapsed() < Duration::from_secs(10));

        let silent = run_child(&mut sh("exit 3"), Duration::from_secs(10));
        assert_eq!(silent.outcome.headline(), "failed: exit", "{silent:?}");

        let ok = run_child(&mut sh("echo 'ok elapsed_s=0.25'"), Duration::from_secs(10));
        assert_eq!(ok.outcome.seconds(), Some(0.25));

        let missing = run_child(
            &mut Command::new("/nonexistent/cell"),
            Duration::from_secs(1),
        );
        assert_eq!(missing.outcome.headline(), "failed: spawn");
    }

    #[cfg(unix)]
    #[test]
    fn a_run_knows_the_cpu_time_of_its_child() {
        // A child that counts uses CPU time; one that sleeps, next to none of its wall
        // time. (CPU time, not wall time: a loaded machine does not change either.)
        let busy = run_child(
            &mut sh("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo 'ok elapsed_s=1'"),
            Duration::from_secs(120),
        );
        let cpu = busy.cpu.unwrap_or_else(|| panic!("{busy:?}"));
        assert!(cpu > Duration::from_millis(20), "{busy:?}");
        let idle = run_child(
            &mut sh("sleep 1; echo 'ok elapsed_s=1'"),
            Duration::from_secs(60),
        );
        let cpu = idle.cpu.unwrap_or_else(|| panic!("{idle:?}"));
        assert!(cpu < Duration::from_millis(500), "{idle:?}");
        // A child that never ran has no figure.
        let missing = run_child(
            &mut Command::new("/nonexistent/cell"),
            Duration::from_secs(1),
        );
        assert_eq!(missing.cpu, None);
    }

    #[cfg(unix)]
    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }
}
