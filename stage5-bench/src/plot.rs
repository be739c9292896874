//! The table as a picture: wall time against concurrency, both on log scales, one line
//! per model, the physical floor below them, and the article's own figures (measured on
//! its author's Mac) as a reference.
//!
//! A cell that did not run has no point on its line: it gets a cross in a strip of its
//! own above the plot, labelled "did not run", where no data point can ever be.
//!
//! It is written with the crate's one SVG writer, [`svg`](crate::svg).

use std::fmt::Write;

use crate::svg::{Svg, escape};

/// How a line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Solid, filled markers: measured here, in Rust.
    Solid,
    /// Dashed, filled markers: measured here, another language (the Python rows).
    Dashed,
    /// Dash-dotted, hollow markers: the article's figures, from another machine.
    Article,
}

/// One line of the plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend, e.g. `async tasks` or `Python asyncio`.
    pub name: String,
    /// How it is drawn.
    pub style: Style,
    /// `(concurrency, seconds)`; `None` for a cell that did not run, marked with a cross
    /// in the "did not run" strip above the plot.
    pub points: Vec<(u64, Option<f64>)>,
}

/// The article's table of section 6.2 (100,000 sleeps of 10 ms on its author's Mac), as
/// two reference series; its "did not finish" cells become "did not run" marks.
pub fn article_series() -> Vec<Series> {
    let series = |name: &str, points: [(u64, Option<f64>); 4]| Series {
        name: name.to_string(),
        style: Style::Article,
        points: points.to_vec(),
    };
    vec![
        series(
            "article: threading",
            [
                (100, Some(11.834)),
                (1_000, Some(1.245)),
                (10_000, None),
                (100_000, None),
            ],
        ),
        series(
            "article: asyncio",
            [
                (100, Some(11.345)),
                (1_000, Some(1.139)),
                (10_000, Some(0.293)),
                (100_000, Some(0.693)),
            ],
        ),
    ]
}

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = WIDTH - 210.0;
/// The "did not run" strip: between the title and the plot, outside the axes.
const STRIP_TOP: f64 = 34.0;
const STRIP_BOTTOM: f64 = 58.0;
const TOP: f64 = 66.0;
const BOTTOM: f64 = HEIGHT - 50.0;
const COLORS: [&str; 10] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// An SVG of `series` and the `floor` (`(concurrency, seconds)`), titled `title`.
pub fn svg(title: &str, series: &[Series], floor: &[(u64, f64)]) -> String {
    let xs = || {
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(floor.iter().map(|p| p.0))
            .filter(|&x| x > 0)
            .map(|x| x as f64)
    };
    let ys = || {
        series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| p.1))
            .chain(floor.iter().map(|p| p.1))
            .filter(|&y| y > 0.0)
    };
    let decades = |values: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| {
            let v = v.log10();
            (lo.min(v), hi.max(v))
        });
        if lo > hi {
            return (0.0, 1.0); // nothing to plot
        }
        let (lo, hi) = (lo.floor(), hi.ceil());
        (lo, if hi > lo { hi } else { lo + 1.0 })
    };
    let (x0, x1) = decades(&mut xs());
    // The y axis starts at a decade and ends a little above the slowest point, so that
    // a 10.7 s cell does not stretch the plot up to 100 s.
    let (y0, top) = decades(&mut ys());
    let slowest = ys().fold(f64::MIN, f64::max);
    let y1 = if slowest > 0.0 {
        (slowest.log10() + 0.15).clamp(y0 + 1.0, top.max(y0 + 1.0))
    } else {
        top
    };
    let px = |x: f64| LEFT + (x.log10() - x0) / (x1 - x0) * (RIGHT - LEFT);
    let py = |y: f64| BOTTOM - (y.log10() - y0) / (y1 - y0) * (BOTTOM - TOP);

    // The font is inherited: an element's own `font-size` attribute (the title's 14)
    // still wins over it.
    let mut out = Svg::new(
        WIDTH,
        HEIGHT,
        title,
        "svg { font-family: sans-serif; font-size: 12px; }\n",
    );
    let w = &mut out;
    // Writing into an Svg cannot fail.
    let _ = writeln!(
        w,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        (LEFT + RIGHT) / 2.0,
        escape(title)
    );
    // Decade grid lines with their labels.
    for d in (x0 as i32)..=(x1 as i32) {
        let x = px(10f64.powi(d));
        let _ = writeln!(
            w,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            BOTTOM + 16.0,
            count(10f64.powi(d))
        );
    }
    for d in (y0 as i32)..=(y1.floor() as i32) {
        let y = py(10f64.powi(d));
        let _ = writeln!(
            w,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{} s</text>"##,
            LEFT - 6.0,
            y + 4.0,
            decade(d)
        );
    }
    let _ = writeln!(
        w,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let _ = writeln!(
        w,
        r#"<text x="{}" y="{}" text-anchor="middle">concurrency (workers)</text>"#,
        (LEFT + RIGHT) / 2.0,
        HEIGHT - 12.0
    );
    let _ = writeln!(
        w,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">wall time</text>"#,
        (TOP + BOTTOM) / 2.0,
        (TOP + BOTTOM) / 2.0
    );

    let legend = |w: &mut Svg, row: usize, name: &str, color: &str, dash: &str| {
        let y = TOP + 10.0 + 20.0 * row as f64;
        let _ = writeln!(
            w,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            RIGHT + 14.0,
            RIGHT + 40.0,
            RIGHT + 46.0,
            y + 4.0,
            escape(name)
        );
    };
    let floor_points: Vec<String> = floor
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", px(x as f64), py(y)))
        .collect();
    let dotted = r#" stroke-dasharray="2 3""#;
    let _ = writeln!(
        w,
        r#"<polyline points="{}" fill="none" stroke="black" stroke-width="2"{dotted}/>"#,
        floor_points.join(" ")
    );
    legend(w, 0, "floor (ideal)", "black", dotted);

    let missing = series.iter().flat_map(|s| &s.points).any(|p| p.1.is_none());
    if missing {
        // The strip is outside the axes and has no scale: nothing in it is a time.
        let _ = writeln!(
            w,
            r##"<rect x="{LEFT}" y="{STRIP_TOP}" width="{}" height="{}" fill="#f4f4f4" stroke="#bbb"/><text x="{}" y="{}" text-anchor="end" font-size="11">did not run</text>"##,
            RIGHT - LEFT,
            STRIP_BOTTOM - STRIP_TOP,
            LEFT - 6.0,
            (STRIP_TOP + STRIP_BOTTOM) / 2.0 + 4.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let dash = match s.style {
            Style::Solid => "",
            Style::Dashed => r#" stroke-dasharray="7 4""#,
            Style::Article => r#" stroke-dasharray="9 3 2 3""#,
        };
        // Hollow markers for figures from another machine.
        let fill = match s.style {
            Style::Article => format!(r#"fill="white" stroke="{color}" stroke-width="1.5""#),
            _ => format!(r#"fill="{color}""#),
        };
        // A cell that did not run breaks the line.
        for run in s.points.split(|p| p.1.is_none()) {
            let points: Vec<(f64, f64)> = run
                .iter()
                .filter_map(|&(x, y)| Some((px(x as f64), py(y?))))
                .collect();
            if points.is_empty() {
                continue;
            }
            let text: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = writeln!(
                w,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                text.join(" ")
            );
            for (x, y) in &points {
                let _ = writeln!(w, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" {fill}/>"#);
            }
        }
        for &(concurrency, _) in s.points.iter().filter(|p| p.1.is_none()) {
            let x = mark_x(series, i, concurrency, px(concurrency as f64));
            let y = (STRIP_TOP + STRIP_BOTTOM) / 2.0;
            let _ = writeln!(
                w,
                r#"<path d="M{:.1},{:.1} l6,6 m0,-6 l-6,6" stroke="{color}" stroke-width="2"><title>{} at {}: did not run</title></path>"#,
                x - 3.0,
                y - 3.0,
                escape(&s.name),
                count(concurrency as f64)
            );
        }
        legend(w, i + 1, &s.name, color, dash);
    }
    if missing {
        let _ = writeln!(
            w,
            r#"<text x="{}" y="{}" font-size="11">× in the strip above: did not run</text>"#,
            RIGHT + 14.0,
            TOP + 14.0 + 20.0 * (series.len() + 1) as f64
        );
    }
    out.finish()
}

/// Where series `i`'s "did not run" mark at `concurrency` goes in the strip: side by
/// side with the other series' marks at the same concurrency, 9 px apart, centred on `x`
/// and shifted as a group to stay inside the strip.
fn mark_x(series: &[Series], i: usize, concurrency: u64, x: f64) -> f64 {
    const GAP: f64 = 9.0;
    let missing_here = |s: &Series| {
        s.points
            .iter()
            .any(|&(c, y)| c == concurrency && y.is_none())
    };
    let group = series.iter().filter(|s| missing_here(s)).count();
    let place = series[..i].iter().filter(|s| missing_here(s)).count();
    let width = GAP * group.saturating_sub(1) as f64;
    let first = (x - width / 2.0).clamp(LEFT + 6.0, (RIGHT - 6.0 - width).max(LEFT + 6.0));
    first + GAP * place as f64
}

/// `0.01`, `1`, `10`: ten to the `d`, without binary fractions showing.
fn decade(d: i32) -> String {
    let places = usize::try_from(-d).unwrap_or(0);
    format!("{:.places$}", 10f64.powi(d))
}

/// `100`, `1k`, `10k`, `1M`.
fn count(n: f64) -> String {
    match n {
        n if n >= 1e6 => format!("{}M", n / 1e6),
        n if n >= 1e3 => format!("{}k", n / 1e3),
        n => format!("{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_markers_and_a_cross_outside_the_axes_for_what_did_not_run() {
        let series = [
            Series {
                name: "threads".into(),
                style: Style::Solid,
                points: vec![(100, Some(10.1)), (1000, Some(1.03)), (100_000, None)],
            },
            Series {
                name: "Python <asyncio>".into(),
                style: Style::Dashed,
                points: vec![(100, Some(10.5)), (100_000, Some(2.0))],
            },
        ];
        let floor = [(100, 10.0), (1000, 1.0), (100_000, 0.01)];
        let svg = svg("100000 sleeps of 10 ms", &series, &floor);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        // A text alternative for screen readers: the title, escaped.
        assert!(
            svg.contains(r#"aria-label="100000 sleeps of 10 ms">"#),
            "{svg}"
        );
        assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 4, "{svg}");
        assert_eq!(
            svg.matches("threads at 100k: did not run</title>").count(),
            1,
            "{svg}"
        );
        assert!(svg.contains("Python &lt;asyncio&gt;") && svg.contains("did not run</text>"));
        for label in ["100k", "0.01 s", "10 s", "floor (ideal)"] {
            assert!(svg.contains(label), "{label}: {svg}");
        }
        // Every coordinate is a number inside the picture.
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        // Every cross sits in the strip above the axes, never where a time could be.
        const { assert!(STRIP_BOTTOM < TOP) };
        for mark in svg.lines().filter(|l| l.starts_with("<path d=\"M")) {
            let y: f64 = mark["<path d=\"M".len()..]
                .split([',', ' '])
                .nth(1)
                .and_then(|y| y.parse().ok())
                .unwrap_or_else(|| panic!("{mark}"));
            let x: f64 = mark["<path d=\"M".len()..]
                .split(',')
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or_else(|| panic!("{mark}"));
            assert!(y >= STRIP_TOP && y + 6.0 <= STRIP_BOTTOM, "{mark}");
            assert!(x >= LEFT && x + 6.0 <= RIGHT, "{mark}");
        }
        // Every data point is inside the axes.
        for circle in svg.lines().filter(|l| l.starts_with("<circle")) {
            let cy: f64 = circle
                .split("cy=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|y| y.parse().ok())
                .unwrap_or_else(|| panic!("{circle}"));
            assert!((TOP..=BOTTOM).contains(&cy), "{circle}");
        }
    }

    #[test]
    fn marks_at_the_same_concurrency_stand_apart_inside_the_strip() {
        let missing = |name: &str| Series {
            name: name.into(),
            style: Style::Solid,
            points: vec![(100, Some(10.0)), (100_000, None)],
        };
        let series: Vec<Series> = ["a", "b", "c", "d"].map(missing).to_vec();
        let xs: Vec<f64> = (0..series.len())
            .map(|i| mark_x(&series, i, 100_000, RIGHT))
            .collect();
        for pair in xs.windows(2) {
            assert!(pair[1] - pair[0] >= 8.0, "{xs:?}");
        }
        assert!(
            xs.iter().all(|&x| x - 3.0 >= LEFT && x + 3.0 <= RIGHT),
            "{xs:?}"
        );
    }

    #[test]
    fn the_article_series_are_hollow_and_its_unfinished_cells_are_marked() {
        let svg = svg(
            "article",
            &article_series(),
            &[(100, 10.0), (100_000, 0.01)],
        );
        // Six points, each a hollow circle; two "did not finish" cells, two crosses.
        assert_eq!(svg.matches(r#"fill="white" stroke="#).count(), 6, "{svg}");
        assert_eq!(
            svg.matches("article: threading at 10k: did not run")
                .count(),
            1
        );
        assert_eq!(svg.matches(": did not run</title>").count(), 2, "{svg}");
    }

    #[test]
    fn an_empty_plot_is_still_a_picture() {
        let svg = svg("nothing", &[], &[]);
        assert!(svg.contains("</svg>") && !svg.contains("NaN"));
    }
}
