//! Printing figures for a reader: thousands separators, markdown tables whose columns
//! also line up in a terminal, and captions that fit. Every binary of this crate prints
//! through these.

/// `100,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A markdown table, printed with `shared::say!`: the columns in `left` aligned to the
/// left (names, prose), every other one to the right (figures).
pub fn print_markdown(header: &[&str], rows: &[Vec<String>], left: &[usize]) {
    for line in markdown(header, rows, left) {
        shared::say!("{line}");
    }
}

/// The lines of [`print_markdown`].
pub fn markdown(header: &[&str], rows: &[Vec<String>], left: &[usize]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| format!("| {} |", cells.join(" | "));
    let pad = |i: usize, text: &str| {
        if left.contains(&i) {
            format!("{text:<w$}", w = widths[i])
        } else {
            format!("{text:>w$}", w = widths[i])
        }
    };
    let mut lines = vec![line(
        header.iter().enumerate().map(|(i, h)| pad(i, h)).collect(),
    )];
    lines.push(line(
        widths
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                if left.contains(&i) {
                    "-".repeat(w)
                } else {
                    format!("{}:", "-".repeat(w.saturating_sub(1)))
                }
            })
            .collect(),
    ));
    for row in rows {
        lines.push(line(
            row.iter()
                .enumerate()
                .map(|(i, cell)| pad(i, cell))
                .collect(),
        ));
    }
    lines
}

/// A table whose rows come in sections, each under a heading line (`Rust`, `Python
/// 3.11.7`), the columns lined up across all of them: the article's table, where a
/// column per runtime would cost the width the figures need.
///
/// Its lines are markdown without the outer pipes, four columns narrower than
/// [`markdown`]'s; a heading is a line without a pipe, which a markdown reader takes as a
/// row with one cell.
#[derive(Debug, Clone, Default)]
pub struct Sections {
    header: Vec<String>,
    left: Vec<usize>,
    rows: Vec<Row>,
}

#[derive(Debug, Clone)]
enum Row {
    Heading(String),
    Cells(Vec<String>),
}

impl Sections {
    /// A table with these column headers; every column aligned to the right (figures).
    pub fn new(header: &[&str]) -> Sections {
        Sections {
            header: header.iter().map(|h| h.to_string()).collect(),
            ..Sections::default()
        }
    }

    /// Aligns these columns to the left instead (names, prose).
    pub fn left(mut self, columns: &[usize]) -> Sections {
        self.left = columns.to_vec();
        self
    }

    /// Starts a section: its heading, on a line of its own.
    pub fn heading(&mut self, text: &str) {
        self.rows.push(Row::Heading(text.to_string()));
    }

    /// A row of the current section, one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(Row::Cells(cells));
    }

    /// The lines to print: the header, the alignment line, then each heading and row.
    pub fn lines(&self) -> Vec<String> {
        let cells = self.rows.iter().filter_map(|row| match row {
            Row::Cells(cells) => Some(cells),
            Row::Heading(_) => None,
        });
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let left = |i: usize| self.left.contains(&i);
        // The last column is not padded on the right: no line ends in spaces.
        let line = |cells: Vec<String>| cells.join(" | ").trim_end().to_string();
        let pad = |i: usize, text: &str| {
            if left(i) {
                format!("{text:<w$}", w = widths[i])
            } else {
                format!("{text:>w$}", w = widths[i])
            }
        };
        let mut lines = vec![line(
            self.header
                .iter()
                .enumerate()
                .map(|(i, h)| pad(i, h))
                .collect(),
        )];
        lines.push(line(
            widths
                .iter()
                .enumerate()
                .map(|(i, &w)| {
                    if left(i) {
                        "-".repeat(w)
                    } else {
                        format!("{}:", "-".repeat(w.saturating_sub(1)))
                    }
                })
                .collect(),
        ));
        for row in &self.rows {
            lines.push(match row {
                Row::Heading(text) => text.clone(),
                Row::Cells(cells) => line(
                    cells
                        .iter()
                        .enumerate()
                        .map(|(i, cell)| pad(i, cell))
                        .collect(),
                ),
            });
        }
        lines
    }

    /// Prints [`Sections::lines`] with `shared::say!`.
    pub fn print(&self) {
        for line in self.lines() {
            shared::say!("{line}");
        }
    }
}

/// `text` broken into lines of at most `width` characters, at spaces (a word longer
/// than `width` gets a line of its own): a caption that must not wrap in a narrow box. A
/// no-break space, [`NBSP`], holds two words on one line, and prints as a space.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text
        .split([' ', '\n', '\t'])
        .filter(|word| !word.is_empty())
    {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
        .into_iter()
        .map(|line| line.replace(NBSP, " "))
        .collect()
}

/// The no-break space of [`wrap`].
pub const NBSP: char = '\u{a0}';

/// `2 CPUs, linux 6.18.0, vm.max_map_count 65530`: what the figures depend on.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let read = |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_string());
    let mut text = format!("{cpus} CPUs, {}", std::env::consts::OS);
    if let Ok(release) = read("/proc/sys/kernel/osrelease") {
        text += &format!(" {release}");
    }
    if let Ok(max) = read("/proc/sys/vm/max_map_count") {
        text += &format!(", vm.max_map_count {max}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn columns_line_up_names_left_figures_right() {
        let rows = vec![
            vec!["threads".to_string(), "1.5 s".to_string()],
            vec!["tasks".to_string(), "10.25 s".to_string()],
        ];
        let lines = markdown(&["model", "time"], &rows, &[0]);
        assert_eq!(
            lines,
            [
                "| model   |    time |",
                "| ------- | ------: |",
                "| threads |   1.5 s |",
                "| tasks   | 10.25 s |",
            ]
        );
    }

    #[test]
    fn sections_share_their_columns_under_headings() {
        let mut table = Sections::new(&["tasks", "time"]);
        table.heading("Rust");
        table.row(vec!["100".into(), "1.5".into()]);
        table.heading("Python 3.11.7, a heading wider than the columns");
        table.row(vec!["1,000".into(), "10.25".into()]);
        assert_eq!(
            table.lines(),
            [
                "tasks |  time",
                "----: | ----:",
                "Rust",
                "  100 |   1.5",
                "Python 3.11.7, a heading wider than the columns",
                "1,000 | 10.25",
            ]
        );
        let mut names = Sections::new(&["name", "n"]).left(&[0, 1]);
        names.row(vec!["threads".into(), "1".into()]);
        assert_eq!(names.lines(), ["name    | n", "------- | -", "threads | 1"]);
    }

    #[test]
    fn captions_wrap_at_spaces() {
        assert_eq!(
            wrap("the median of three runs, each in a fresh process", 20),
            ["the median of three", "runs, each in a", "fresh process"]
        );
        assert_eq!(
            wrap("a unbreakableword b", 5),
            ["a", "unbreakableword", "b"]
        );
        assert!(wrap("  ", 10).is_empty());
        let held = format!("a spread, (slowest{NBSP}-{NBSP}fastest){NBSP}/{NBSP}median.");
        assert_eq!(
            wrap(&held, 20),
            ["a spread,", "(slowest - fastest) / median."]
        );
    }
}
