//! The run as a picture: connections open, requests waiting and answers verified over
//! time (left), and the bytes one connection costs, by part (right). An SVG written by
//! hand, like the crate's other pictures: no fonts, scripts or links to fetch.

use std::fmt::Write;

use super::run::{MemoryAt, Outcome};
use crate::svg::escape;
use crate::text::thousands;

const WIDTH: f64 = 940.0;
const HEIGHT: f64 = 420.0;
/// The timeline's frame.
const LEFT: f64 = 70.0;
const RIGHT: f64 = 540.0;
const TOP: f64 = 66.0;
const BOTTOM: f64 = 360.0;
/// The memory bar's frame.
const BAR_LEFT: f64 = 610.0;
const BAR_WIDTH: f64 = 80.0;

/// The lines of the timeline: name, colour, and which count of a sample they draw.
type Pick = fn(&super::run::Sample) -> u64;
const LINES: [(&str, &str, Pick); 4] = [
    ("opened (clients)", "#1f77b4", |s| s.opened),
    ("open (servers)", "#aec7e8", |s| s.accepted),
    ("waiting (servers)", "#ff7f0e", |s| s.waiting),
    ("verified", "#2ca02c", |s| s.verified),
];

/// The SVG of a run.
pub fn svg(title: &str, outcome: &Outcome) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(w, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        w,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    timeline(w, outcome);
    memory_bar(w, outcome);
    out.push_str("</svg>\n");
    out
}

fn timeline(w: &mut String, outcome: &Outcome) {
    let samples = &outcome.samples;
    let t_max = samples.last().map_or(1.0, |s| s.at).max(1.0);
    let y_max = (outcome.connections as f64).max(1.0);
    let px = |t: f64| LEFT + t / t_max * (RIGHT - LEFT);
    let py = |v: f64| BOTTOM - v / y_max * (BOTTOM - TOP);
    let _ = writeln!(
        w,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let step = nice_step(t_max);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        let x = px(t);
        let _ = writeln!(
            w,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{} s</text>"##,
            BOTTOM + 16.0,
            trim(t)
        );
        t += step;
    }
    for quarter in 0..=4 {
        let v = y_max * f64::from(quarter) / 4.0;
        let y = py(v);
        let _ = writeln!(
            w,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            short(v)
        );
    }
    let _ = writeln!(
        w,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds since the clients began to open</text>"#,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 36.0
    );
    if let Some(go) = outcome.open_time {
        let x = px(go.as_secs_f64());
        let _ = writeln!(
            w,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}" stroke="#999" stroke-dasharray="4 3"/><text x="{:.1}" y="{}" font-size="11">start signal</text>"##,
            x + 4.0,
            TOP + 14.0
        );
    }
    // At most ~600 points a line: enough for the eye, small enough for the book.
    let every = samples.len().div_ceil(600).max(1);
    let mut legend_x = LEFT;
    for (name, color, pick) in LINES {
        let points: Vec<String> = samples
            .iter()
            .step_by(every)
            .chain(samples.last())
            .map(|s| format!("{:.1},{:.1}", px(s.at), py(pick(s) as f64)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = writeln!(
            w,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            points.join(" ")
        );
        // The legend, in a row above the frame, where no line can cross it.
        let (x, y) = (legend_x, TOP - 12.0);
        legend_x += 34.0 + 6.5 * name.len() as f64;
        let _ = writeln!(
            w,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            x + 16.0,
            x + 20.0,
            y + 4.0,
            escape(name)
        );
    }
}

/// Bytes per connection, stacked: user space of both sides, then the kernel's.
fn memory_bar(w: &mut String, outcome: &Outcome) {
    let parts = memory_parts(outcome);
    let total: f64 = parts.iter().map(|p| p.1).sum();
    let moment = last_moment(outcome).map_or("", |m| m.label.as_str());
    let _ = writeln!(
        w,
        r#"<text x="{BAR_LEFT}" y="{}">bytes per connection, {}</text>"#,
        TOP - 12.0,
        escape(moment)
    );
    if total <= 0.0 {
        let _ = writeln!(
            w,
            r#"<text x="{BAR_LEFT}" y="{}">not measured on this OS</text>"#,
            TOP + 20.0
        );
        return;
    }
    let scale = (BOTTOM - TOP) / total;
    let mut y = BOTTOM;
    // Labels beside their part, but never closer than a line's height to the one below.
    let mut label_floor = BOTTOM + 14.0;
    for (name, bytes, color) in parts.into_iter().filter(|p| p.1 >= 0.5) {
        let height = bytes * scale;
        y -= height;
        let label = (y + height / 2.0 + 4.0).min(label_floor - 14.0);
        label_floor = label;
        let _ = writeln!(
            w,
            r##"<rect x="{BAR_LEFT}" y="{y:.1}" width="{BAR_WIDTH}" height="{height:.1}" fill="{color}" stroke="white"/><text x="{}" y="{label:.1}">{}: {} B</text>"##,
            BAR_LEFT + BAR_WIDTH + 8.0,
            escape(name),
            thousands(bytes.round() as u64)
        );
    }
}

/// The parts of the last moment measured, per connection: `(name, bytes, colour)`.
pub fn memory_parts(outcome: &Outcome) -> Vec<(&'static str, f64, &'static str)> {
    let (Some(before), Some(at)) = (outcome.memory.first(), last_moment(outcome)) else {
        return Vec::new();
    };
    let n = at.connections.max(1) as f64;
    let per = |v: Option<u64>| v.unwrap_or(0) as f64 / n;
    let mut parts = vec![
        ("client processes", per(at.client_rss), "#1f77b4"),
        ("server processes", per(at.server_rss), "#ff7f0e"),
    ];
    if let (Some(b), Some(a)) = (before.kernel, at.kernel) {
        let slab = (a.slab as f64 - b.slab as f64) / n;
        let buffers =
            (a.tcp_pages as f64 - b.tcp_pages as f64) * super::plan::page_size() as f64 / n;
        // NB: not MemAvailable's drop: it counts the sockets' inodes and dentries as
        // reclaimable slab, which they are not while the connections live.
        parts.push(("kernel: slab", slab.max(0.0), "#2ca02c"));
        parts.push(("kernel: socket buffers", buffers.max(0.0), "#98df8a"));
    }
    parts
}

fn last_moment(outcome: &Outcome) -> Option<&MemoryAt> {
    outcome.memory.iter().skip(1).rfind(|m| m.connections > 0)
}

fn nice_step(max: f64) -> f64 {
    let raw = max / 8.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(raw)
}

fn trim(t: f64) -> String {
    if t.fract().abs() < 1e-9 {
        format!("{t:.0}")
    } else {
        format!("{t:.1}")
    }
}

/// `250k`, `1M`.
fn short(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{}M", trim(v / 1e6)),
        v if v >= 1e3 => format!("{}k", trim(v / 1e3)),
        v => trim(v),
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::Snapshot;
    use super::super::run::{Mode, Sample};
    use super::*;

    #[test]
    fn a_run_becomes_four_lines_and_a_bar() {
        let sample = |at, opened, waiting, verified| Sample {
            at,
            opened,
            accepted: opened,
            waiting,
            verified,
        };
        let kernel = |slab, available| {
            Some(Snapshot {
                slab,
                available,
                ..Snapshot::default()
            })
        };
        let moment = |label: &str, connections, rss, kernel| MemoryAt {
            label: label.into(),
            connections,
            client_rss: Some(rss),
            server_rss: Some(rss / 2),
            kernel,
            client_cpu: None,
            server_cpu: None,
        };
        let outcome = Outcome {
            mode: Some(Mode::Run),
            connections: 1000,
            samples: vec![
                sample(0.0, 0, 0, 0),
                sample(1.0, 1000, 0, 0),
                sample(2.0, 1000, 1000, 0),
                sample(7.0, 1000, 0, 1000),
            ],
            open_time: Some(std::time::Duration::from_secs(1)),
            memory: vec![
                moment("before", 0, 1 << 20, kernel(1 << 20, 1 << 30)),
                moment(
                    "all waiting",
                    1000,
                    3 << 20,
                    kernel(11 << 20, (1 << 30) - (15 << 20)),
                ),
            ],
            ..Outcome::default()
        };
        let svg = svg("a thousand <connections>", &outcome);
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
        assert!(svg.contains("a thousand &lt;connections&gt;"));
        assert!(svg.contains("start signal") && svg.contains("1k"));
        let parts = memory_parts(&outcome);
        assert_eq!(parts[0].1, 3.0 * 1024.0 * 1024.0 / 1000.0);
        assert_eq!(parts[2].1, 10.0 * 1024.0 * 1024.0 / 1000.0);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }
}
