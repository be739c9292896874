//! What a run found, for the person at the terminal and for the book: the plan, the
//! refusals, and the report, as text.

use std::fmt::Write;

use super::kernel::Snapshot;
use super::net::explain;
use super::plan::{Machine, Plan, Refusal, gib, page_size};
use super::run::{MemoryAt, Mode, Outcome};
use crate::text::{markdown, thousands};

/// The kernel's growth per pair that a probe in C measured on this machine (the issue
/// that asked for the run): 9.9 KiB of slab.
pub const PROBE_SLAB_PER_PAIR: f64 = 9.9 * 1024.0;

/// The plan, before anything starts: what each limit allows and what the run will do.
pub fn plan_text(plan: &Plan, machine: &Machine, mode: Mode) -> String {
    let mut out = String::new();
    let what = match mode {
        Mode::Run => "stage 4's client against the slow server, every request in flight at once",
        Mode::Floor => "the floor: bare non-blocking connects and accepts",
    };
    let _ = writeln!(out, "{} connections: {what}", thousands(plan.connections));
    let text = format!(
        "machine: {}{}",
        crate::text::machine(),
        memory_text(machine)
    );
    out.push_str(&wrap(&text, "", "  "));
    for note in &plan.notes {
        out.push_str(&wrap(note, "  ", "    "));
    }
    for warning in &plan.warnings {
        out.push_str(&wrap(&format!("warning: {warning}"), "  ", "    "));
    }
    out
}

fn memory_text(machine: &Machine) -> String {
    machine
        .mem_available
        .map_or(String::new(), |bytes| format!(", {} available", gib(bytes)))
}

/// Every limit the run would cross, one paragraph each.
pub fn refusal_text(connections: u64, refusals: &[Refusal]) -> String {
    let mut out = format!(
        "error: {} connections cannot run on this machine; refused before starting:\n",
        thousands(connections)
    );
    for refusal in refusals {
        out.push_str(&wrap(&refusal.to_string(), "  - ", "    "));
    }
    out
}

/// The report of a run, and of the floor beside it when there was one.
pub fn outcome_text(outcome: &Outcome, floor: Option<&Outcome>) -> String {
    let mut out = String::new();
    let w = &mut out;
    let (clients, servers) = outcome.processes;
    let run = outcome.mode == Some(Mode::Run);
    let heading = format!(
        "{}: {} from {} to {}, {}",
        if run { "the run" } else { "the floor" },
        plural(clients, "client process", "client processes"),
        outcome.sources.0,
        outcome.sources.1,
        if run {
            format!(
                "{} (the slow server, delay {} ms)",
                plural(servers, "server shard", "server shards"),
                outcome.delay.as_millis()
            )
        } else {
            plural(servers, "acceptor", "acceptors")
        }
    );
    w.push_str(&wrap(&heading, "", "  "));
    let row = |w: &mut String, name: &str, text: String| {
        w.push_str(&wrap(&text, &format!("  {name:<16}"), &" ".repeat(18)));
    };
    let n = outcome.connections;
    match outcome.open_time {
        Some(time) => row(
            w,
            "opened",
            format!(
                "{} of {} connections in {:.2} s: {} a second",
                thousands(outcome.opened),
                thousands(n),
                time.as_secs_f64(),
                thousands(rate(outcome.opened, time.as_secs_f64()))
            ),
        ),
        None => row(
            w,
            "opened",
            format!(
                "{} of {} connections",
                thousands(outcome.opened),
                thousands(n)
            ),
        ),
    }
    if let (Some(floor), Some(time), Some(floor_time)) =
        (floor, outcome.open_time, floor.and_then(|f| f.open_time))
    {
        let ours = rate(outcome.opened, time.as_secs_f64());
        let bare = rate(floor.opened, floor_time.as_secs_f64());
        row(
            w,
            "floor",
            format!(
                "{} a second with bare connects and accepts in the same layout: the run \
                 opened at {:.2} of it",
                thousands(bare),
                ours as f64 / bare.max(1) as f64
            ),
        );
    }
    if let Some((client, server)) = cpu_between(outcome, 0, 1) {
        let per = |cpu: f64| cpu * 1e6 / outcome.opened.max(1) as f64;
        let mut text = format!(
            "{client:.2} s in the clients, {server:.2} s in the servers: {:.1} + {:.1} µs a \
             connection",
            per(client),
            per(server)
        );
        if let Some(floor) = floor
            && let Some((floor_client, floor_server)) = cpu_between(floor, 0, 1)
        {
            let floor_per = |cpu: f64| cpu * 1e6 / floor.opened.max(1) as f64;
            text += &format!(
                " (the floor: {:.1} + {:.1} µs)",
                floor_per(floor_client),
                floor_per(floor_server)
            );
        }
        row(w, "cpu to open", text);
    }
    let opening = outcome
        .memory
        .first()
        .and_then(|m| m.kernel)
        .zip(outcome.memory.get(1).and_then(|m| m.kernel));
    if let Some((before, open)) = opening {
        let dropped = open
            .listen_overflows
            .saturating_sub(before.listen_overflows);
        let again = open.syn_retransmits.saturating_sub(before.syn_retransmits);
        row(
            w,
            "handshakes",
            format!(
                "{} dropped on a full accept queue, {} SYNs sent again (the whole machine's \
                 counters while opening: ListenOverflows, TCPSynRetrans)",
                thousands(dropped),
                thousands(again)
            ),
        );
    }
    if outcome.open_time.is_some() {
        row(
            w,
            "open at once",
            format!(
                "{} (the servers' count, before the start signal)",
                thousands(outcome.open_at_once)
            ),
        );
    }
    if run {
        if let Some(arrived) = outcome.all_arrived {
            row(
                w,
                "arrived",
                format!(
                    "{} requests, all at their servers {:.2} s after the start signal: {} a \
                     second",
                    thousands(outcome.opened),
                    arrived.as_secs_f64(),
                    thousands(rate(outcome.opened, arrived.as_secs_f64()))
                ),
            );
        }
        if let Some((client, server)) = cpu_between(outcome, 1, 2) {
            let per = |cpu: f64| cpu * 1e6 / outcome.opened.max(1) as f64;
            row(
                w,
                "cpu to send",
                format!(
                    "{client:.2} s in the clients, {server:.2} s in the servers: {:.1} + {:.1} \
                     µs a request",
                    per(client),
                    per(server)
                ),
            );
        }
        let delay = outcome.delay.as_secs_f64();
        match outcome.waiting_at_once {
            Some((waiting, at)) if waiting >= outcome.opened && waiting > 0 => row(
                w,
                "waiting at once",
                format!(
                    "{}: all of them, {:.2} s after the start signal (no answer can leave a \
                     server before {delay:.2} s)",
                    thousands(waiting),
                    at.as_secs_f64(),
                ),
            ),
            Some((waiting, at)) => row(
                w,
                "waiting at once",
                format!(
                    "{} at most, {:.2} s after the start signal: not all of them, because \
                     sending took longer than the delay of {delay:.2} s; run again with \
                     --delay-ms {}",
                    thousands(waiting),
                    at.as_secs_f64(),
                    suggested_delay_ms(outcome)
                ),
            ),
            None => row(
                w,
                "waiting at once",
                "not measured: the servers did not count waiting requests".into(),
            ),
        }
        let answered = outcome.answer_time.map_or(String::new(), |t| {
            format!(", {:.2} s after the start signal", t.as_secs_f64())
        });
        row(
            w,
            "verified",
            format!(
                "{} answers, each its own request's line{answered}",
                thousands(outcome.verified)
            ),
        );
    }
    if let Some(peak) = outcome.tcp_pages_peak {
        let bytes = peak * page_size();
        let mut text = format!(
            "{} at most at once (TCP: mem, the whole machine's)",
            mib(bytes)
        );
        if let Some([_, pressure, limit]) = outcome.tcp_mem {
            text += &format!(
                "; net.ipv4.tcp_mem puts pressure at {} and the limit at {}",
                mib(pressure * page_size()),
                mib(limit * page_size())
            );
        }
        row(w, "socket buffers", text);
    }
    if outcome.failures.is_empty() {
        row(w, "failures", "none".into());
    } else {
        let total: u64 = outcome.failures.values().sum();
        row(w, "failures", thousands(total));
        for (kind, count) in &outcome.failures {
            let text = format!("{kind}: {} ({})", thousands(*count), explain(kind));
            w.push_str(&wrap(&text, "    ", "      "));
        }
    }
    row(w, "total", format!("{:.1} s", outcome.total.as_secs_f64()));
    if let Some(bytes) = outcome.task_future_bytes {
        row(
            w,
            "one task",
            format!("a connection's future is {bytes} bytes; stage 4 boxes it as the task"),
        );
    }
    if let Some(stopped) = &outcome.stopped {
        row(w, "stopped", stopped.clone());
    }
    for warning in &outcome.warnings {
        w.push_str(&wrap(&format!("warning: {warning}"), "  ", "    "));
    }
    let _ = writeln!(w);
    out.push_str(&memory_table(outcome));
    out
}

/// Bytes per connection, by part, at each moment measured after the start.
pub fn memory_table(outcome: &Outcome) -> String {
    let Some(before) = outcome.memory.first() else {
        return String::new();
    };
    let moments: Vec<&MemoryAt> = outcome
        .memory
        .iter()
        .skip(1)
        .filter(|m| m.connections > 0)
        .collect();
    if moments.is_empty() {
        return String::new();
    }
    let mut header = vec!["bytes per connection".to_string()];
    header.extend(moments.iter().map(|m| m.label.clone()));
    // A kernel figure can come out below zero when something else on the machine freed
    // more than the run took: printed as it is, never hidden.
    let per = |value: Option<f64>, m: &MemoryAt| match value {
        Some(v) => {
            let v = (v / m.connections as f64).round();
            let sign = if v < 0.0 { "-" } else { "" };
            format!("{sign}{} B", thousands(v.abs() as u64))
        }
        None => "not measured".into(),
    };
    let kernel = |pick: fn(&Snapshot, &Snapshot) -> f64| {
        moments
            .iter()
            .map(|m| per(before.kernel.zip(m.kernel).map(|(b, a)| pick(&b, &a)), m))
            .collect::<Vec<_>>()
    };
    let rss = |pick: fn(&MemoryAt) -> Option<u64>| {
        moments
            .iter()
            .map(|m| per(pick(m).map(|v| v as f64), m))
            .collect::<Vec<_>>()
    };
    let start = |pick: fn(&MemoryAt) -> Option<u64>| {
        moments
            .iter()
            .map(|m| per(pick(before).map(|v| v as f64), m))
            .collect::<Vec<_>>()
    };
    let mut rows: Vec<(String, Vec<String>)> = vec![
        ("client processes (RSS)".into(), rss(|m| m.client_rss)),
        ("  of which at their start".into(), start(|m| m.client_rss)),
        ("server processes (RSS)".into(), rss(|m| m.server_rss)),
        ("  of which at their start".into(), start(|m| m.server_rss)),
        (
            "kernel: slab".into(),
            kernel(|b, a| a.slab as f64 - b.slab as f64),
        ),
        (
            "  of which unreclaimable".into(),
            kernel(|b, a| a.unreclaimable as f64 - b.unreclaimable as f64),
        ),
        (
            "kernel: socket buffers".into(),
            kernel(|b, a| (a.tcp_pages as f64 - b.tcp_pages as f64) * page_size() as f64),
        ),
        (
            "kernel: page tables".into(),
            kernel(|b, a| a.page_tables as f64 - b.page_tables as f64),
        ),
        (
            "MemAvailable drop".into(),
            kernel(|b, a| b.available as f64 - a.available as f64),
        ),
    ];
    if outcome.mode == Some(Mode::Floor) {
        rows.retain(|(name, _)| !name.contains("RSS") && !name.contains("at their start"));
    }
    let table: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(name, cells)| std::iter::once(name).chain(cells).collect())
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut out = markdown(&header, &table, &[0]).join("\n");
    out.push('\n');
    if let (Some(b), Some(last)) = (before.kernel, moments.last().and_then(|m| m.kernel)) {
        let slab =
            (last.slab as f64 - b.slab as f64) / moments.last().map_or(1, |m| m.connections) as f64;
        let text = format!(
            "The kernel's slab grew {:.2} KiB per connection pair (at each end: the tcp_sock, \
             the socket and its inode, the file, the epoll entry); a probe in C measured \
             {:.1} KiB.",
            slab / 1024.0,
            PROBE_SLAB_PER_PAIR / 1024.0
        );
        out.push_str(&wrap(&text, "", ""));
    }
    out
}

/// CPU seconds the clients and the servers spent between two moments measured (0:
/// before opening, 1: all open, 2: all waiting).
fn cpu_between(outcome: &Outcome, from: usize, to: usize) -> Option<(f64, f64)> {
    let (a, b) = (outcome.memory.get(from)?, outcome.memory.get(to)?);
    let spent = |a: Option<std::time::Duration>, b: Option<std::time::Duration>| {
        Some(b?.saturating_sub(a?).as_secs_f64())
    };
    Some((
        spent(a.client_cpu, b.client_cpu)?,
        spent(a.server_cpu, b.server_cpu)?,
    ))
}

/// A delay that outlasts sending with room to spare: twice the time the requests took to
/// reach their servers (or would take, at the rate seen before the first answers), in
/// whole 5 s.
fn suggested_delay_ms(outcome: &Outcome) -> u64 {
    let seconds = match (outcome.all_arrived, outcome.waiting_at_once) {
        (Some(arrived), _) => arrived.as_secs_f64(),
        (None, Some((waiting, at))) if waiting > 0 => {
            at.as_secs_f64() * outcome.opened as f64 / waiting as f64
        }
        _ => outcome.delay.as_secs_f64() * 2.0,
    };
    ((2.0 * seconds / 5.0).ceil() as u64).max(1) * 5000
}

/// The widest line the report prints: the book shows it in a text block.
pub const WIDTH: usize = 100;

/// `text` on lines of at most [`WIDTH`] characters, broken at spaces: the first line
/// starts with `first`, the others with `rest`.
pub fn wrap(text: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split(' ') {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = rest.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// `12.3 MiB`.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// `1 client process`, `51 client processes`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn rate(count: u64, seconds: f64) -> u64 {
    (count as f64 / seconds.max(1e-9)).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_break_at_spaces_under_the_width() {
        let text = "word ".repeat(60);
        let wrapped = wrap(text.trim(), "  opened          ", &" ".repeat(18));
        let lines: Vec<&str> = wrapped.lines().collect();
        assert!(lines.len() >= 3, "{wrapped}");
        assert!(
            lines.iter().all(|l| l.chars().count() <= WIDTH),
            "{wrapped}"
        );
        assert!(lines[0].starts_with("  opened          word"));
        assert!(lines[1].starts_with(&format!("{}word", " ".repeat(18))));
        assert_eq!(wrapped.matches("word").count(), 60);
    }
}
