//! The network table as a picture: requests per second above, CPU time per request below
//! (system time dark, user time light, the kernel floor as a dashed line), one group of
//! bars per connection count, one colour per server.

use std::fmt::Write;

use crate::svg::{Svg, escape};

/// One server at one connection count: the medians of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// The server's label.
    pub server: String,
    /// Requests per second.
    pub rate: f64,
    /// The server's user CPU time per request, in µs.
    pub user_us: f64,
    /// The server's system CPU time per request, in µs.
    pub system_us: f64,
}

/// The bars at one connection count.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// How many connections.
    pub connections: usize,
    /// One bar per server that ran.
    pub bars: Vec<Bar>,
    /// The floor's system time per request, in µs, if it ran.
    pub floor_us: Option<f64>,
}

const WIDTH: f64 = 800.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 610.0;
const TOP: f64 = 50.0;
const PANEL: f64 = 200.0;
const GAP: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#7f7f7f", "#1f77b4", "#17becf", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

const STYLE: &str = "\
text { font-family: sans-serif; font-size: 12px; fill: #222; }
.title { font-size: 15px; font-weight: bold; text-anchor: middle; }
.axis { text-anchor: end; fill: #444; }
.group { text-anchor: middle; }
.grid { stroke: #ddd; }
.frame { fill: none; stroke: #444; }
.floor { stroke: #000; stroke-width: 1.5; stroke-dasharray: 5 3; }
";

/// The picture of `groups`, titled `title`.
pub fn svg(title: &str, groups: &[Group]) -> String {
    let servers: Vec<&str> = {
        let mut names: Vec<&str> = Vec::new();
        for bar in groups.iter().flat_map(|g| &g.bars) {
            if !names.contains(&bar.server.as_str()) {
                names.push(&bar.server);
            }
        }
        names
    };
    let color = |name: &str| {
        let i = servers.iter().position(|s| *s == name).unwrap_or(0);
        COLORS[i % COLORS.len()]
    };
    let height = TOP + 2.0 * PANEL + GAP + 50.0;
    let mut out = Svg::new(WIDTH, height, title, STYLE);
    let w = &mut out;
    // Writing into an Svg cannot fail.
    let _ = writeln!(
        w,
        r#"<text x="{}" y="24" class="title">{}</text>"#,
        (LEFT + RIGHT) / 2.0,
        escape(title)
    );
    let rate_max = groups
        .iter()
        .flat_map(|g| g.bars.iter().map(|b| b.rate))
        .fold(0.0, f64::max);
    let cpu_max = groups
        .iter()
        .flat_map(|g| {
            g.bars
                .iter()
                .map(|b| b.user_us + b.system_us)
                .chain(g.floor_us)
        })
        .fold(0.0, f64::max);
    let top2 = TOP + PANEL + GAP;
    panel(w, TOP, rate_max, "requests per second", count);
    panel(w, top2, cpu_max, "CPU µs per request", |v| {
        if v == v.round() {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    });

    let slot = (RIGHT - LEFT) / groups.len().max(1) as f64;
    let (rate_scale, cpu_scale) = (nice(rate_max), nice(cpu_max));
    for (g, group) in groups.iter().enumerate() {
        let x0 = LEFT + slot * g as f64;
        let bar_width = (slot * 0.8) / group.bars.len().max(1) as f64;
        for (b, bar) in group.bars.iter().enumerate() {
            let x = x0 + slot * 0.1 + bar_width * b as f64;
            let fill = color(&bar.server);
            let name = escape(&bar.server);
            let h = PANEL * bar.rate / rate_scale;
            let _ = writeln!(
                w,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{fill}"><title>{name}, {} connections: {:.0} requests/s</title></rect>"#,
                TOP + PANEL - h,
                bar_width - 1.0,
                group.connections,
                bar.rate
            );
            let (hs, hu) = (
                PANEL * bar.system_us / cpu_scale,
                PANEL * bar.user_us / cpu_scale,
            );
            let base = top2 + PANEL;
            let _ = writeln!(
                w,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{hs:.1}" fill="{fill}"><title>{name}, {} connections: {:.1} µs system per request</title></rect>"#,
                base - hs,
                bar_width - 1.0,
                group.connections,
                bar.system_us
            );
            let _ = writeln!(
                w,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{hu:.1}" fill="{fill}" fill-opacity="0.4"><title>{name}, {} connections: {:.1} µs user per request</title></rect>"#,
                base - hs - hu,
                bar_width - 1.0,
                group.connections,
                bar.user_us
            );
        }
        if let Some(floor) = group.floor_us {
            let y = top2 + PANEL - PANEL * floor / cpu_scale;
            let _ = writeln!(
                w,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" class="floor"><title>kernel floor at {} connections: {floor:.1} µs system per request</title></line>"#,
                x0 + slot * 0.05,
                x0 + slot * 0.95,
                group.connections
            );
        }
        for top in [TOP, top2] {
            let _ = writeln!(
                w,
                r#"<text x="{:.1}" y="{:.1}" class="group">{} conn.</text>"#,
                x0 + slot / 2.0,
                top + PANEL + 16.0,
                count(group.connections as f64)
            );
        }
    }
    // The legend.
    for (i, name) in servers.iter().enumerate() {
        let y = TOP + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            w,
            r#"<rect x="{}" y="{}" width="14" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            RIGHT + 16.0,
            y - 10.0,
            color(name),
            RIGHT + 36.0,
            y,
            escape(name)
        );
    }
    let y = top2 + 10.0;
    let _ = writeln!(
        w,
        r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" class="floor"/><text x="{}" y="{}">kernel floor (system)</text>"#,
        RIGHT + 16.0,
        RIGHT + 30.0,
        RIGHT + 36.0,
        y + 4.0
    );
    let _ = writeln!(
        w,
        r#"<text x="{}" y="{}">dark: system, light: user</text>"#,
        RIGHT + 16.0,
        y + 24.0
    );
    out.finish()
}

/// A panel's frame, grid and axis labels, from 0 to [`nice`]`(max)`: five steps for a
/// top of 1 or 5 times a power of ten, four for 2, 4 or 8 times, so every step is round.
fn panel(w: &mut Svg, top: f64, max: f64, label: &str, format: impl Fn(f64) -> String) {
    let scale = nice(max);
    let leading = (scale / 10f64.powf(scale.log10().floor())).round();
    let steps = if leading == 1.0 || leading == 5.0 {
        5
    } else {
        4
    };
    for i in 0..=steps {
        let value = scale * f64::from(i) / f64::from(steps);
        let y = top + PANEL - PANEL * value / scale;
        let _ = writeln!(
            w,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" class="grid"/><text x="{}" y="{:.1}" class="axis">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            format(value)
        );
    }
    let _ = writeln!(
        w,
        r#"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL}" class="frame"/><text x="{LEFT}" y="{}">{}</text>"#,
        RIGHT - LEFT,
        top - 8.0,
        escape(label)
    );
}

/// A round top for an axis: 1, 2, 4, 5 or 8 times a power of ten, at least `max`.
fn nice(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 4.0, 5.0, 8.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&v| v >= max)
        .unwrap_or(10.0 * power)
}

/// `950`, `12k`, `1.5M`.
fn count(n: f64) -> String {
    match n {
        n if n >= 1e6 => format!("{}M", (n / 1e5).round() / 10.0),
        n if n >= 1e3 => format!("{}k", (n / 1e2).round() / 10.0),
        n => format!("{n:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_per_server_and_group_with_the_floor_and_a_legend() {
        let bar = |server: &str, rate: f64| Bar {
            server: server.into(),
            rate,
            user_us: 2.0,
            system_us: 8.0,
        };
        let groups = [
            Group {
                connections: 1,
                bars: vec![bar("stage 4 <mio>", 9e4), bar("tokio", 1e5)],
                floor_us: Some(6.0),
            },
            Group {
                connections: 10_000,
                bars: vec![bar("stage 4 <mio>", 8e4)],
                floor_us: None,
            },
        ];
        let svg = svg("echo & hello", &groups);
        // Three bars, each drawn three times (rate, system, user), and two legend boxes.
        assert_eq!(svg.matches("<rect x=").count(), 3 * 3 + 2 + 2, "{svg}");
        assert_eq!(svg.matches(r#"class="floor""#).count(), 2, "{svg}");
        assert!(svg.contains("stage 4 &lt;mio&gt;") && svg.contains("10k conn."));
        assert!(svg.contains(r#"aria-label="echo &amp; hello""#));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        // Every bar inside its panel.
        for rect in svg
            .lines()
            .filter(|l| l.starts_with("<rect") && l.contains("<title>"))
        {
            let y: f64 = rect
                .split("y=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!((TOP..=TOP + 2.0 * PANEL + GAP).contains(&y), "{rect}");
        }
        assert_eq!(
            (nice(0.0), nice(7.0), nice(120_000.0)),
            (1.0, 8.0, 200_000.0)
        );
    }
}
