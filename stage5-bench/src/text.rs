//! Printing figures for a reader: thousands separators, and markdown tables whose
//! columns also line up in a terminal. Every binary of this crate prints through these.

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
}
