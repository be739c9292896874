//! The book's pictures drawn from real runs: a timeline of each stage's requests, and the
//! four players' dance of stages 3 and 4 as sequence diagrams read from `--trace`.
//!
//! Each picture is an SVG from the crate's one writer ([`svg`](crate::svg): no fonts,
//! scripts or links to fetch, a text alternative) and a structure summary beside it: what the picture shows, without the timings (lanes,
//! bars, their order and overlap; lifelines and each task's messages). CI regenerates
//! the pictures and compares the summaries, so a picture that no longer matches the
//! code fails, while a run that was a few milliseconds slower does not.
//!
//! ```text
//! cargo run --release -p stage5-bench --bin pictures            # into book/src/figures
//! cargo run --release -p stage5-bench --bin pictures -- --out DIR
//! ```

use std::fmt::Write;
use std::time::Duration;

use shared::{Error, Report, request_ids};

use crate::svg::{Svg, escape};

/// How the requests of a timeline share threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// One thread makes the requests one after the other.
    OneSequential,
    /// One thread per request.
    PerRequest,
    /// One thread, every request in flight at once (an event loop).
    OneInterleaved,
}

/// One request's bar: from when it was sent to when its answer arrived, in seconds from
/// the run's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// The request's id.
    pub id: u64,
    /// When it started (derived: see [`Timeline::from_report`]).
    pub start: f64,
    /// When its verified answer arrived (from the report).
    pub end: f64,
}

/// The requests of one run, in the order they were sent.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The title, e.g. `stage 0, one thread per request`.
    pub title: String,
    /// How the requests share threads.
    pub threads: Threads,
    /// One bar per request, in the order the requests were sent.
    pub bars: Vec<Bar>,
}

impl Timeline {
    /// The timeline of a verified report. The report records when each answer arrived,
    /// not when its request was sent, so the start is derived: for requests made one
    /// after the other, the previous answer's arrival (the first starts at 0); for
    /// requests made at once, the run's start.
    pub fn from_report(title: &str, threads: Threads, report: &Report) -> Result<Timeline, Error> {
        let arrival = |id: u64| {
            report
                .responses()
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.at.as_secs_f64())
                .ok_or_else(|| Error::Other(format!("{title}: no answer to request {id}")))
        };
        let mut bars = Vec::new();
        let mut previous = 0.0;
        for id in request_ids(report.expected()) {
            let end = arrival(id)?;
            let start = match threads {
                Threads::OneSequential => previous,
                Threads::PerRequest | Threads::OneInterleaved => 0.0,
            };
            previous = end;
            bars.push(Bar { id, start, end });
        }
        Ok(Timeline {
            title: title.to_string(),
            threads,
            bars,
        })
    }

    /// Whether no two bars overlap and each starts no earlier than the one before ended.
    pub fn is_staircase(&self) -> bool {
        self.bars.windows(2).all(|w| w[1].start >= w[0].end)
    }

    /// Whether every pair of bars overlaps in time.
    pub fn all_overlap(&self) -> bool {
        self.bars.iter().enumerate().all(|(i, a)| {
            self.bars[i + 1..]
                .iter()
                .all(|b| a.start < b.end && b.start < a.end)
        })
    }

    /// How many threads the picture draws.
    pub fn thread_count(&self) -> usize {
        match self.threads {
            Threads::PerRequest => self.bars.len(),
            Threads::OneSequential | Threads::OneInterleaved => 1,
        }
    }

    /// What the picture shows, without the timings: compared by `.ci/pictures --check`.
    pub fn structure(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "timeline: {}", self.title);
        let _ = writeln!(out, "threads: {}", self.thread_count());
        let _ = writeln!(out, "bars: {}", self.bars.len());
        let order: Vec<String> = self.bars.iter().map(|b| b.id.to_string()).collect();
        let _ = writeln!(out, "rows, top to bottom: requests {}", order.join(", "));
        let shape = if self.is_staircase() {
            "a staircase: each bar starts where the one before ended"
        } else if self.all_overlap() {
            "every bar overlaps every other"
        } else {
            "some bars overlap"
        };
        let _ = writeln!(out, "shape: {shape}");
        out
    }

    /// The picture.
    pub fn svg(&self) -> String {
        const W: f64 = 760.0;
        const LEFT: f64 = 170.0;
        const RIGHT: f64 = W - 30.0;
        const TOP: f64 = 56.0;
        const ROW: f64 = 26.0;
        let rows = self.bars.len() as f64;
        let bottom = TOP + rows * ROW;
        let height = bottom + 50.0;
        let max = self.bars.iter().map(|b| b.end).fold(0.0, f64::max);
        let step = nice_step(max);
        let span = (max / step).ceil().max(1.0) * step;
        let x = |t: f64| LEFT + (RIGHT - LEFT) * t / span;
        let mut svg = Svg::new(W, height, &self.title, STYLE);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="24" class="title">{}</text>"#,
            W / 2.0,
            escape(&self.title)
        );
        let legend = match self.threads {
            Threads::OneSequential => "one thread: each request waits for the one before",
            Threads::PerRequest => "one thread per request, each blocked in its own read",
            Threads::OneInterleaved => "one thread: every request waits at once, in one event loop",
        };
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="44" class="small">{legend}</text>"#,
            W / 2.0
        );
        // The threads: one band behind all rows, or one per row.
        match self.threads {
            Threads::PerRequest => {
                for i in 0..self.bars.len() {
                    let y = TOP + i as f64 * ROW + 2.0;
                    let _ = writeln!(
                        svg,
                        r#"<rect x="{LEFT}" y="{y}" width="{}" height="{}" class="band"/>"#,
                        RIGHT - LEFT,
                        ROW - 4.0
                    );
                }
            }
            Threads::OneSequential | Threads::OneInterleaved => {
                let _ = writeln!(
                    svg,
                    r#"<rect x="{LEFT}" y="{}" width="{}" height="{}" class="band"/>"#,
                    TOP,
                    RIGHT - LEFT,
                    rows * ROW
                );
            }
        }
        // Time axis.
        let mut t = 0.0;
        while t <= span + 1e-9 {
            let _ = writeln!(
                svg,
                r#"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1}" class="grid"/><text x="{0:.1}" y="{2}" class="small">{3}</text>"#,
                x(t),
                bottom + 4.0,
                bottom + 18.0,
                seconds_label(t, step)
            );
            t += step;
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" class="small">seconds since the run started</text>"#,
            (LEFT + RIGHT) / 2.0,
            bottom + 38.0
        );
        for (i, bar) in self.bars.iter().enumerate() {
            let y = TOP + i as f64 * ROW;
            let label = match self.threads {
                Threads::PerRequest => format!("thread of request {}", bar.id),
                _ => format!("request {}", bar.id),
            };
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" class="label">{label}</text>"#,
                LEFT - 8.0,
                y + ROW / 2.0 + 4.0
            );
            let (x0, x1) = (x(bar.start), x(bar.end));
            let _ = writeln!(
                svg,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" class="bar"><title>request {}: {:.3} s to {:.3} s</title></rect>"#,
                y + 7.0,
                (x1 - x0).max(1.0),
                ROW - 14.0,
                bar.id,
                bar.start,
                bar.end
            );
            let _ = writeln!(
                svg,
                r#"<circle cx="{x1:.1}" cy="{:.1}" r="4" class="arrival"/>"#,
                y + ROW / 2.0
            );
        }
        svg.finish()
    }
}

/// Who sent a message to whom in a sequence diagram, or a note on one lifeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Seconds since the trace started, as printed (`0.201`).
    pub time: String,
    /// The sender's lifeline.
    pub from: String,
    /// The receiver's lifeline; the same as `from` for a note.
    pub to: String,
    /// What the arrow says.
    pub label: String,
}

/// A sequence diagram: lifelines, left to right, and messages, top to bottom.
#[derive(Debug, Clone, Default)]
pub struct Dance {
    /// The title.
    pub title: String,
    /// The lifelines, in the order they are drawn.
    pub lifelines: Vec<String>,
    /// The messages, in trace order.
    pub messages: Vec<Message>,
}

/// `[   0.201 s] rest` as `("0.201", "rest")`; `None` for a line without the stamp.
fn stamped(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('[')?;
    let (time, rest) = rest.split_once(" s] ")?;
    Some((time.trim(), rest))
}

impl Dance {
    fn lifeline(&mut self, name: &str) {
        if !self.lifelines.iter().any(|l| l == name) {
            self.lifelines.push(name.to_string());
        }
    }

    fn push(&mut self, time: &str, from: &str, to: &str, label: String) {
        self.lifeline(from);
        self.lifeline(to);
        self.messages.push(Message {
            time: time.to_string(),
            from: from.to_string(),
            to: to.to_string(),
            label,
        });
    }

    /// Reads stage 3's `--trace` output. Lifelines: the event loop, each task, and the
    /// OS's `poll`. Lines without a `[time s]` stamp (the header, the report) are
    /// skipped; a stamped line this parser does not know is an error.
    pub fn parse_stage3(title: &str, trace: &str) -> Result<Dance, Error> {
        const LOOP: &str = "event loop";
        const OS: &str = "OS: poll";
        let mut dance = Dance {
            title: title.to_string(),
            ..Dance::default()
        };
        dance.lifeline(LOOP);
        let mut current = String::new();
        for line in trace.lines() {
            let Some((t, rest)) = stamped(line) else {
                continue;
            };
            let task = || rest.strip_prefix("task `")?.split_once('`');
            if let Some((name, what)) = task() {
                let what = what.trim_start();
                if what.starts_with("created") {
                    dance.push(t, name, LOOP, "created: first step scheduled".into());
                } else if what == "resumed" {
                    current = name.to_string();
                    dance.push(t, LOOP, name, "resume".into());
                } else if let Some(future) = what.strip_prefix("yielded ") {
                    let future = future.split(';').next().unwrap_or(future);
                    dance.push(t, name, LOOP, format!("yield {future}"));
                } else if what == "complete" {
                    dance.push(t, name, LOOP, "complete".into());
                } else {
                    return Err(unknown(line));
                }
            } else if let Some(what) = rest.strip_prefix("loop waits in poll") {
                let at_most = what.trim_start_matches(',').split('(').next().unwrap_or("");
                dance.push(t, LOOP, OS, format!("waits,{}", at_most.trim_end()));
            } else if rest.starts_with("loop polls without blocking") {
                dance.push(t, LOOP, OS, "checks, no wait".into());
            } else if let Some(what) = rest.strip_prefix("socket of ") {
                let future = what
                    .strip_suffix(" is ready")
                    .ok_or_else(|| unknown(line))?;
                dance.push(t, OS, LOOP, format!("{future} ready"));
            } else if let Some(what) = rest.strip_prefix("future ") {
                let (future, callbacks) = what
                    .split_once(" set_result: ")
                    .ok_or_else(|| unknown(line))?;
                let number = future.split(' ').next().unwrap_or(future);
                let callbacks = callbacks.replace(" scheduled", "");
                dance.push(t, LOOP, LOOP, format!("future {number} done: {callbacks}"));
            } else if rest.starts_with("Request ") && !current.is_empty() {
                let who = current.clone();
                dance.push(t, &who, &who, format!("got `{rest}`"));
            } else {
                return Err(unknown(line));
            }
        }
        dance.lifelines.retain(|l| l != OS);
        dance.lifelines.push(OS.to_string());
        Ok(dance)
    }

    /// Reads stage 4's `--trace` output (its grammar is documented in the stage's
    /// `trace` module). Lifelines: the executor, each task (and `main`), and the
    /// reactor. Unstamped lines are skipped; a stamped step this parser does not know
    /// is an error.
    pub fn parse_stage4(title: &str, trace: &str) -> Result<Dance, Error> {
        const EXECUTOR: &str = "executor";
        const REACTOR: &str = "reactor";
        let mut dance = Dance {
            title: title.to_string(),
            ..Dance::default()
        };
        dance.lifeline(EXECUTOR);
        // Who runs now: the task being polled, or the reactor after an event.
        let mut current = String::new();
        for line in trace.lines() {
            let Some((t, rest)) = stamped(line) else {
                continue;
            };
            let (step, what) = rest.split_once(' ').unwrap_or((rest, ""));
            let what = what.trim_start();
            match step {
                "poll" => {
                    current = what.to_string();
                    dance.push(t, EXECUTOR, what, "poll".into());
                }
                "spawn" => {
                    let from = if current.is_empty() {
                        EXECUTOR
                    } else {
                        &current.clone()
                    };
                    dance.lifeline(what);
                    dance.push(t, from, EXECUTOR, format!("spawn {what}"));
                }
                "waker" => {
                    let (task, on) = what.split_once(" on ").ok_or_else(|| unknown(line))?;
                    dance.push(t, task, REACTOR, format!("waker on {on}"));
                }
                "pending" => dance.push(t, what, EXECUTOR, "Pending".into()),
                "ready" => dance.push(t, what, EXECUTOR, "Ready".into()),
                "reactor" => {
                    current = REACTOR.to_string();
                    let words = what.split(" (").next().unwrap_or(what);
                    dance.push(t, EXECUTOR, REACTOR, words.to_string());
                }
                "event" => {
                    current = REACTOR.to_string();
                    dance.push(t, REACTOR, REACTOR, what.to_string());
                }
                "wake" => {
                    let from = if current.is_empty() {
                        EXECUTOR
                    } else {
                        &current.clone()
                    };
                    dance.push(t, from, EXECUTOR, format!("wake {what}"));
                }
                "Request" if !current.is_empty() && current != REACTOR => {
                    let who = current.clone();
                    dance.push(t, &who, &who, format!("got `{rest}`"));
                }
                _ => return Err(unknown(line)),
            }
        }
        dance.lifelines.retain(|l| l != REACTOR);
        dance.lifelines.push(REACTOR.to_string());
        Ok(dance)
    }

    /// The messages a lifeline sends or receives (and its notes), in order, without
    /// wakes (who wakes whom first depends on which answer the OS reports first).
    pub fn messages_of(&self, lifeline: &str) -> Vec<&Message> {
        self.messages
            .iter()
            .filter(|m| m.from == lifeline || m.to == lifeline)
            .filter(|m| !m.label.starts_with("wake "))
            .collect()
    }

    /// What the picture shows, without the timings: the lifelines, and the messages of
    /// each request's task (their interleaving, the event loop's rounds and `main`'s or
    /// `gather`'s wake-ups depend on when the OS reports each answer, so they are left
    /// out). Numbers of futures, sockets and timers are left out too.
    pub fn structure(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "sequence diagram: {}", self.title);
        let _ = writeln!(out, "lifelines: {}", self.lifelines.join(" | "));
        for lifeline in &self.lifelines {
            if !(lifeline.starts_with("request ") || lifeline.starts_with("task ")) {
                continue;
            }
            let _ = writeln!(out, "{lifeline}:");
            for m in self.messages_of(lifeline) {
                let arrow = if m.from == m.to {
                    format!("note on {}", m.from)
                } else {
                    format!("{} -> {}", m.from, m.to)
                };
                let _ = writeln!(out, "  {arrow}: {}", without_numbers(&m.label));
            }
        }
        out
    }

    /// The picture.
    pub fn svg(&self) -> String {
        const W: f64 = 760.0;
        const LEFT: f64 = 70.0;
        const TOP: f64 = 82.0;
        const ROW: f64 = 21.0;
        let n = self.lifelines.len().max(1) as f64;
        let column = (W - LEFT - 20.0) / n;
        let x = |name: &str| {
            let i = self.lifelines.iter().position(|l| l == name).unwrap_or(0);
            LEFT + column * (i as f64 + 0.5)
        };
        let bottom = TOP + (self.messages.len() as f64 + 0.5) * ROW;
        let mut svg = Svg::new(W, bottom + 20.0, &self.title, STYLE);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="20" class="title">{}</text>"#,
            W / 2.0,
            escape(&self.title)
        );
        let _ = writeln!(
            svg,
            r#"<text x="8" y="{}" class="time">time (s)</text>"#,
            TOP - 24.0
        );
        for name in &self.lifelines {
            let cx = x(name);
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="32" width="{:.1}" height="24" rx="4" class="head"/><text x="{cx:.1}" y="48" class="head">{}</text><line x1="{cx:.1}" y1="56" x2="{cx:.1}" y2="{bottom:.1}" class="life"/>"#,
                cx - column / 2.0 + 6.0,
                column - 12.0,
                escape(name)
            );
        }
        let mut last_time = "";
        for (i, m) in self.messages.iter().enumerate() {
            let y = TOP + i as f64 * ROW;
            if m.time != last_time {
                let _ = writeln!(
                    svg,
                    r#"<text x="8" y="{:.1}" class="time">{}</text><line x1="8" y1="{:.1}" x2="{W}" y2="{:.1}" class="grid"/>"#,
                    y + 4.0,
                    escape(&m.time),
                    y - ROW / 2.0,
                    y - ROW / 2.0
                );
                last_time = &m.time;
            }
            let (x0, x1) = (x(&m.from), x(&m.to));
            if m.from == m.to {
                // A note: a box on the lifeline, its text beside it (to the left of the
                // last lifeline, to the right of the others).
                let last = self.lifelines.last() == Some(&m.from);
                let (tx, class) = if last {
                    (x0 - 8.0, "note-left")
                } else {
                    (x0 + 8.0, "note-right")
                };
                let _ = writeln!(
                    svg,
                    r#"<rect x="{:.1}" y="{:.1}" width="8" height="12" class="note"/><text x="{tx:.1}" y="{:.1}" class="{class}">{}</text>"#,
                    x0 - 4.0,
                    y - 6.0,
                    y + 4.0,
                    escape(&m.label)
                );
                continue;
            }
            let dir = if x1 > x0 { 1.0 } else { -1.0 };
            let _ = writeln!(
                svg,
                r#"<line x1="{x0:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" class="arrow"/><path d="M{x1:.1},{y:.1} l{:.1},-4 v8 z" class="head-arrow"/><text x="{:.1}" y="{:.1}" class="msg">{}</text>"#,
                x1 - dir * 6.0,
                -dir * 7.0,
                (x0 + x1) / 2.0,
                y - 4.0,
                escape(&m.label)
            );
        }
        svg.finish()
    }
}

fn unknown(line: &str) -> Error {
    Error::Other(format!("a trace line this parser does not know: `{line}`"))
}

/// `future 7 (readable)` as `future (readable)`, `59999 ms` as `N ms`: the structure
/// without what changes from run to run.
fn without_numbers(text: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() || (in_number && c == '.') {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// The pictures' style sheet (system fonts only).
const STYLE: &str = "\
text { font-family: sans-serif; fill: #222; }
.title { font-size: 16px; font-weight: bold; text-anchor: middle; }
.small { font-size: 12px; text-anchor: middle; fill: #444; }
.label { font-size: 13px; text-anchor: end; }
.time { font-size: 11px; fill: #666; }
.msg, .note-left, .note-right { font-size: 11px; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.msg { text-anchor: middle; }
.note-left { text-anchor: end; }
.note-right { text-anchor: start; }
text.head { font-size: 12px; font-weight: bold; text-anchor: middle; }
rect.head { fill: #e8eef7; stroke: #4a6fa5; }
.band { fill: #f3f3f3; stroke: #bbb; }
.bar { fill: #6f9fd8; stroke: #2f5f98; }
.arrival { fill: #2f5f98; }
.grid { stroke: #ddd; stroke-width: 1; }
.life { stroke: #999; stroke-dasharray: 4 3; }
.arrow { stroke: #333; stroke-width: 1.2; }
.head-arrow { fill: #333; }
.note { fill: #f6d56b; stroke: #a08020; }
";

/// A tick step of 1, 2 or 5 times a power of ten, for about five ticks up to `max`.
fn nice_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(1e-3);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

fn seconds_label(t: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else if step >= 0.1 {
        1
    } else {
        2
    };
    format!("{t:.decimals$}")
}

/// The server delay of the runs the pictures are drawn from: short, so that generating
/// them takes seconds, long enough that the waits dominate the picture.
pub const DELAY: Duration = Duration::from_millis(200);
