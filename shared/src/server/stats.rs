//! The server's counters: atomics the loop bumps as it works, a snapshot anyone can read,
//! and the `stats ...` line `slow-server --stats-ms` prints, which a program watching
//! several servers parses back with [`str::parse`].

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the server's counters.
///
/// Its `Display` is one line, readable by people and programs alike (`key=value` pairs,
/// the keys in this order, new keys only ever added at the end):
///
/// ```text
/// stats open=12 peak_open=40 waiting=3 peak_waiting=40 accepted=40 answered=37 errors=0 idle_closed=0 fd_exhausted=0 cut_short=0
/// ```
///
/// and [`FromStr`] reads such a line back (keys it does not know are skipped, keys
/// missing are 0), so a program that runs several servers can add up their peaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections open now.
    pub open: u64,
    /// Most connections open at the same time.
    pub peak_open: u64,
    /// Lines received whose answer is not written yet: waiting for their delay now.
    pub waiting: u64,
    /// Most lines waiting at the same time.
    pub peak_waiting: u64,
    /// Connections accepted so far.
    pub accepted: u64,
    /// Lines answered: counted when the delay is over, just before the echo is written,
    /// so a client that has read its answer always finds it counted.
    pub answered: u64,
    /// Connections closed because of bad input.
    pub errors: u64,
    /// Connections closed because they were idle for the idle timeout.
    pub idle_closed: u64,
    /// Times `accept` failed for lack of file descriptors.
    pub fd_exhausted: u64,
    /// Lines answered with `ERROR shutting down` instead of their echo, because a
    /// graceful shutdown's drain budget ran out before their delay did.
    pub cut_short: u64,
}

impl ServerStats {
    /// The fields, named as in the `stats` line, in its order.
    fn fields(&self) -> [(&'static str, u64); 10] {
        [
            ("open", self.open),
            ("peak_open", self.peak_open),
            ("waiting", self.waiting),
            ("peak_waiting", self.peak_waiting),
            ("accepted", self.accepted),
            ("answered", self.answered),
            ("errors", self.errors),
            ("idle_closed", self.idle_closed),
            ("fd_exhausted", self.fd_exhausted),
            ("cut_short", self.cut_short),
        ]
    }

    fn field_mut(&mut self, key: &str) -> Option<&mut u64> {
        Some(match key {
            "open" => &mut self.open,
            "peak_open" => &mut self.peak_open,
            "waiting" => &mut self.waiting,
            "peak_waiting" => &mut self.peak_waiting,
            "accepted" => &mut self.accepted,
            "answered" => &mut self.answered,
            "errors" => &mut self.errors,
            "idle_closed" => &mut self.idle_closed,
            "fd_exhausted" => &mut self.fd_exhausted,
            "cut_short" => &mut self.cut_short,
            _ => return None,
        })
    }
}

impl fmt::Display for ServerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stats")?;
        for (key, value) in self.fields() {
            write!(f, " {key}={value}")?;
        }
        Ok(())
    }
}

/// Why a line is not a `stats` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseStatsError(String);

impl fmt::Display for ParseStatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseStatsError {}

impl FromStr for ServerStats {
    type Err = ParseStatsError;

    fn from_str(line: &str) -> Result<ServerStats, ParseStatsError> {
        let mut words = line.split_whitespace();
        if words.next() != Some("stats") {
            return Err(ParseStatsError(format!(
                "not a stats line (it starts with `stats`): {line}"
            )));
        }
        let mut stats = ServerStats::default();
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                return Err(ParseStatsError(format!("`{word}` is not key=value")));
            };
            if let Some(field) = stats.field_mut(key) {
                *field = value
                    .parse()
                    .map_err(|_| ParseStatsError(format!("{key}: `{value}` is not a count")))?;
            }
        }
        Ok(stats)
    }
}

/// The counters the loop updates and [`SlowServer::stats`](super::SlowServer::stats)
/// reads. Only the loop's thread writes them, so each update is one uncontended atomic
/// add: cheap enough to keep on every accept, line and answer.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) open: AtomicU64,
    pub(super) peak_open: AtomicU64,
    pub(super) waiting: AtomicU64,
    pub(super) peak_waiting: AtomicU64,
    pub(super) accepted: AtomicU64,
    pub(super) answered: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) idle_closed: AtomicU64,
    pub(super) fd_exhausted: AtomicU64,
    pub(super) cut_short: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> ServerStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ServerStats {
            open: load(&self.open),
            peak_open: load(&self.peak_open),
            waiting: load(&self.waiting),
            peak_waiting: load(&self.peak_waiting),
            accepted: load(&self.accepted),
            answered: load(&self.answered),
            errors: load(&self.errors),
            idle_closed: load(&self.idle_closed),
            fd_exhausted: load(&self.fd_exhausted),
            cut_short: load(&self.cut_short),
        }
    }

    /// One more connection open.
    pub(super) fn opened(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(open, Ordering::Relaxed);
    }

    /// A connection's count of waiting lines went from `before` to `after`.
    pub(super) fn waiting_changed(&self, before: usize, after: usize) {
        if after > before {
            let added = (after - before) as u64;
            let waiting = self.waiting.fetch_add(added, Ordering::Relaxed) + added;
            self.peak_waiting.fetch_max(waiting, Ordering::Relaxed);
        } else if before > after {
            self.waiting
                .fetch_sub((before - after) as u64, Ordering::Relaxed);
        }
    }

    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_line_reads_back() {
        let stats = ServerStats {
            open: 12,
            peak_open: 40,
            waiting: 3,
            peak_waiting: 40,
            accepted: 40,
            answered: 37,
            errors: 1,
            idle_closed: 2,
            fd_exhausted: 0,
            cut_short: 5,
        };
        let line = stats.to_string();
        assert!(
            line.starts_with(
                "stats open=12 peak_open=40 waiting=3 peak_waiting=40 accepted=40 answered=37 "
            ),
            "{line}"
        );
        assert_eq!(line.parse::<ServerStats>(), Ok(stats));
    }

    #[test]
    fn unknown_keys_are_skipped_and_garbage_refused() {
        let stats: ServerStats = "stats open=1 uptime_ms=5".parse().unwrap();
        assert_eq!((stats.open, stats.answered), (1, 0));
        assert!("slow-server: listening".parse::<ServerStats>().is_err());
        assert!("stats open=x".parse::<ServerStats>().is_err());
        assert!("stats open".parse::<ServerStats>().is_err());
    }
}
