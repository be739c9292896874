//! What the parent does between events: sample the timeline, print the progress line,
//! watch the socket buffers against `net.ipv4.tcp_mem`, and read every child's memory.

use std::io::Write;
use std::time::{Duration, Instant};

use super::super::REPORT_EVERY;
use super::super::children::{Role, cpu_time, resident_bytes};
use super::super::kernel::{self, Snapshot};
use super::super::outcome::{MemoryAt, Mode, Sample};
use super::Run;
use crate::text::thousands;

impl Run<'_> {
    /// Samples the timeline, prints the progress line, watches socket buffers.
    pub(super) fn tick(&mut self) {
        let now = Instant::now();
        let Some(open_started) = self.open_started else {
            return;
        };
        if now >= self.next_sample {
            self.next_sample += REPORT_EVERY;
            let sample = Sample {
                at: (now - open_started).as_secs_f64(),
                opened: self.client_sum(|c| c.opened),
                accepted: self.server_sum("open"),
                waiting: self.server_sum("waiting"),
                verified: self.client_sum(|c| c.verified),
            };
            self.outcome.samples.push(sample);
            self.watch_tcp_memory();
        }
        if now >= self.next_print {
            self.next_print = now + Duration::from_secs(1);
            self.print_progress(now, open_started);
        }
    }

    fn print_progress(&mut self, now: Instant, open_started: Instant) {
        let opened = self.client_sum(|c| c.opened);
        let verified = self.client_sum(|c| c.verified);
        let rate = |then: Option<(Instant, u64, u64)>, pick: fn((Instant, u64, u64)) -> u64, v| {
            then.map_or(0.0, |t| {
                let secs = (now - t.0).as_secs_f64().max(1e-3);
                (v - pick(t).min(v)) as f64 / secs
            })
        };
        let open_rate = rate(self.printed, |t| t.1, opened);
        let verify_rate = rate(self.printed, |t| t.2, verified);
        self.printed = Some((now, opened, verified));
        let mut line = format!(
            "{:>7.1} s  opened {} ({}/s)  accepted {}",
            (now - open_started).as_secs_f64(),
            thousands(opened),
            thousands(open_rate as u64),
            thousands(self.server_sum("accepted")),
        );
        if self.mode == Mode::Run {
            line += &format!(
                "  waiting {}  verified {} ({}/s)",
                thousands(self.server_sum("waiting")),
                thousands(verified),
                thousands(verify_rate as u64)
            );
        }
        let failed = self.client_sum(|c| c.failed);
        if failed > 0 {
            line += &format!("  failed {}", thousands(failed));
        }
        let mut stderr = std::io::stderr().lock();
        if self.tty {
            let _ = write!(stderr, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
    }

    pub(super) fn end_progress_line(&mut self) {
        if self.tty && self.printed.is_some() {
            to_stderr(format_args!("\n"));
            self.printed = None;
        }
    }

    /// A limit met while running gets its message when it is met.
    fn watch_tcp_memory(&mut self) {
        let (Some(pages), Some(machine_mem)) = (kernel::tcp_pages(), self.tcp_mem) else {
            return;
        };
        let peak = self.outcome.tcp_pages_peak.get_or_insert(0);
        *peak = (*peak).max(pages);
        let [_, pressure, limit] = machine_mem;
        if pages >= pressure && !self.tcp_warned {
            self.tcp_warned = true;
            let warning = format!(
                "net.ipv4.tcp_mem: socket buffers hold {} pages, past the pressure threshold \
                 of {} (the limit is {}): the kernel now trims buffers, and at the limit it \
                 drops packets. Raise it: `sysctl -w net.ipv4.tcp_mem=\"{} {} {}\"`.",
                thousands(pages),
                thousands(pressure),
                thousands(limit),
                2 * machine_mem[0],
                2 * pressure,
                2 * limit
            );
            self.end_progress_line();
            to_stderr(format_args!("warning: {warning}\n"));
            self.outcome.warnings.push(warning);
        }
    }

    pub(super) fn memory(&self, label: &str) -> MemoryAt {
        let rss = |role: Role| -> Option<u64> {
            let mut total = 0;
            for child in self.children.list.iter().filter(|c| c.role == role) {
                total += resident_bytes(child.pid())?;
            }
            Some(total)
        };
        let cpu = |role: Role| -> Option<Duration> {
            let mut total = Duration::ZERO;
            for child in self.children.list.iter().filter(|c| c.role == role) {
                total += cpu_time(child.pid())?;
            }
            Some(total)
        };
        MemoryAt {
            label: label.to_string(),
            connections: self.client_sum(|c| c.opened),
            client_rss: rss(Role::Client),
            server_rss: rss(Role::Server),
            kernel: Snapshot::read(),
            client_cpu: cpu(Role::Client),
            server_cpu: cpu(Role::Server),
        }
    }
}

/// Writes to stderr, and carries on if nobody reads it any more (`2>&1 | head`): the
/// run still has children to stop and a report to give.
pub(super) fn to_stderr(text: std::fmt::Arguments) {
    let _ = std::io::stderr().write_fmt(text);
}
