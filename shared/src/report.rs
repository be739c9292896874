//! The article's demo workload and the report every stage prints.
//!
//! Every stage makes the same requests (ids `requests-1` down to `0`, as in the article's
//! `consume_response` loop), records each answer in a [`Report`] as it arrives, and ends
//! with [`Report::finish`], which checks that every id came back exactly once with its own
//! line. A wrong or missing response is an error, never a quiet pass.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::Error;
use crate::protocol::expected_response;

/// What every stage's `run` needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// The slow server to talk to.
    pub addr: SocketAddr,
    /// How many requests to make, all of them at once (ids `requests-1` down to `0`).
    pub requests: u64,
    /// Print one line per verified response as it arrives (the binaries do; tests do not).
    pub progress: bool,
    /// How long one request may take, connect to answer, before it fails with
    /// [`Error::Timeout`]: a server that accepts and never answers must not hang a stage.
    pub timeout: Duration,
}

/// [`Config::timeout`] unless told otherwise: far above the article's 5 s delay.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Config {
    /// `requests` requests to the server at `addr`, without progress lines, with the
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(addr: SocketAddr, requests: u64) -> Config {
        Config {
            addr,
            requests,
            progress: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The request ids of the article's demo, in the order it sends them: `requests-1` down
/// to `0`.
pub fn request_ids(requests: u64) -> impl DoubleEndedIterator<Item = u64> {
    (0..requests).rev()
}

/// One verified response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request it answers.
    pub id: u64,
    /// The line the server sent, without its newline.
    pub line: String,
    /// When it arrived, measured from [`Report::start`].
    pub at: Duration,
}

/// Responses in arrival order, with the problems found so far.
#[derive(Debug)]
pub struct Report {
    started: Instant,
    total: Option<Duration>,
    expected: u64,
    progress: bool,
    responses: Vec<Response>,
    /// `seen[id]`: a response or failure for `id` was recorded.
    seen: Vec<bool>,
    problems: Vec<(u64, Error)>,
}

/// How many problems [`Report::finish`] spells out before it just counts them.
const PROBLEMS_SHOWN: usize = 3;

impl Report {
    /// Starts the clock for `config.requests` requests.
    pub fn start(config: &Config) -> Report {
        let expected = config.requests;
        Report {
            started: Instant::now(),
            total: None,
            expected,
            progress: config.progress,
            responses: Vec::with_capacity(expected as usize),
            seen: vec![false; expected as usize],
            problems: Vec::new(),
        }
    }

    /// Records the outcome of request `id`: the line the server sent back, or why there is
    /// none. A line that is not `Request {id}` is recorded as a problem, as is a second
    /// outcome for the same id.
    pub fn record(&mut self, id: u64, outcome: Result<String, Error>) {
        let at = self.started.elapsed();
        let problem = match self.seen.get_mut(id as usize) {
            None => Some(Error::Other(format!(
                "response for request {id}, which was never sent (ids are 0..{})",
                self.expected
            ))),
            Some(true) => Some(Error::Other(format!(
                "request {id} was answered more than once"
            ))),
            Some(seen) => {
                *seen = true;
                match outcome {
                    Ok(line) if line == expected_response(id) => {
                        if self.progress {
                            crate::say!("[{:>8.3} s] {line}", at.as_secs_f64());
                        }
                        self.responses.push(Response { id, line, at });
                        None
                    }
                    Ok(line) => Some(Error::WrongResponse { id, got: line }),
                    Err(error) => Some(error),
                }
            }
        };
        // Failures are not printed as they happen: when the server is down, ten copies of
        // "connection refused" would bury the one line that matters. `finish` reports them.
        if let Some(error) = problem {
            self.problems.push((id, error));
        }
    }

    /// Stops the clock and checks that every id was answered exactly once with its own
    /// line.
    ///
    /// If nothing at all was verified, the first problem is returned as it is (when the
    /// server is not there, "connection refused" is the whole story); otherwise a
    /// [`Error::Verification`] counts the verified responses and lists the problems.
    pub fn finish(mut self) -> Result<Report, Error> {
        self.total = Some(self.started.elapsed());
        let missing: Vec<u64> = (0..self.expected)
            .filter(|&id| !self.seen[id as usize])
            .collect();
        if self.problems.is_empty() && missing.is_empty() {
            return Ok(self);
        }
        if self.responses.is_empty() && !self.problems.is_empty() {
            return Err(self.problems.swap_remove(0).1);
        }
        let mut problems: Vec<String> = self
            .problems
            .iter()
            .map(|(_, error)| error.to_string())
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{} requests never got an outcome (ids {})",
                missing.len(),
                list_ids(&missing)
            ));
        }
        let more = problems.len().saturating_sub(PROBLEMS_SHOWN);
        problems.truncate(PROBLEMS_SHOWN);
        Err(Error::Verification {
            verified: self.responses.len(),
            expected: self.expected as usize,
            problems,
            more,
        })
    }

    /// The verified responses, in arrival order.
    pub fn responses(&self) -> &[Response] {
        &self.responses
    }

    /// How many responses matched their request.
    pub fn verified(&self) -> usize {
        self.responses.len()
    }

    /// The ids with no outcome recorded yet, in increasing order: what an event loop
    /// records as timed out when its deadline passes.
    pub fn unanswered(&self) -> Vec<u64> {
        (0..self.expected)
            .filter(|&id| !self.seen[id as usize])
            .collect()
    }

    /// Records every request without an outcome as [`Error::Timeout`]: what a stage
    /// that gave all its requests one deadline does when the deadline passes.
    pub fn time_out_unanswered(&mut self, timeout: Duration) {
        for id in self.unanswered() {
            let what = format!(
                "no answer to request {id} within {:.1} s",
                timeout.as_secs_f64()
            );
            self.record(id, Err(Error::Timeout { what }));
        }
    }

    /// How many responses were expected.
    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// Wall time from [`Report::start`] to [`Report::finish`] (or to now, before finish).
    pub fn total(&self) -> Duration {
        self.total.unwrap_or_else(|| self.started.elapsed())
    }
}

impl fmt::Display for Report {
    /// The final line every stage prints, e.g. `10/10 responses verified in 5.004 s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} responses verified in {:.3} s",
            self.verified(),
            self.expected,
            self.total().as_secs_f64()
        )
    }
}

/// `0, 1, 2, ...` for the first few ids.
fn list_ids(ids: &[u64]) -> String {
    let mut text: Vec<String> = ids.iter().take(5).map(u64::to_string).collect();
    if ids.len() > 5 {
        text.push("...".into());
    }
    text.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DecodeError;

    fn report(requests: u64) -> Report {
        Report::start(&Config::new("127.0.0.1:1".parse().unwrap(), requests))
    }

    #[test]
    fn ids_count_down_like_the_article() {
        assert_eq!(request_ids(3).collect::<Vec<_>>(), [2, 1, 0]);
    }

    #[test]
    fn all_answered_is_verified() {
        let mut report = report(3);
        for id in request_ids(3) {
            report.record(id, Ok(format!("Request {id}")));
        }
        let report = report.finish().expect("verified");
        assert_eq!(report.verified(), 3);
        assert_eq!(
            report.responses().iter().map(|r| r.id).collect::<Vec<_>>(),
            [2, 1, 0]
        );
        let line = report.to_string();
        assert!(line.starts_with("3/3 responses verified in "), "{line}");
        assert!(line.ends_with(" s"), "{line}");
    }

    #[test]
    fn a_missing_response_fails() {
        let mut report = report(3);
        report.record(2, Ok("Request 2".into()));
        report.record(1, Ok("Request 1".into()));
        let error = report.finish().unwrap_err();
        assert!(
            matches!(
                error,
                Error::Verification {
                    verified: 2,
                    expected: 3,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("ids 0"), "{error}");
    }

    #[test]
    fn a_wrong_response_fails() {
        let mut report = report(2);
        report.record(1, Ok("Request 1".into()));
        report.record(0, Ok("ERROR line too long".into()));
        let error = report.finish().unwrap_err().to_string();
        assert!(error.contains("only 1/2 responses verified"), "{error}");
        assert!(error.contains("got `ERROR line too long`"), "{error}");
    }

    #[test]
    fn a_duplicate_fails_even_if_everything_else_arrived() {
        let mut report = report(2);
        report.record(1, Ok("Request 1".into()));
        report.record(0, Ok("Request 0".into()));
        report.record(0, Ok("Request 0".into()));
        let error = report.finish().unwrap_err().to_string();
        assert!(error.contains("answered more than once"), "{error}");
    }

    #[test]
    fn unanswered_requests_time_out_and_answered_ones_still_count() {
        let mut report = report(3);
        report.record(2, Ok("Request 2".into()));
        report.time_out_unanswered(Duration::from_millis(1500));
        let error = report.finish().unwrap_err().to_string();
        assert!(error.contains("only 1/3 responses verified"), "{error}");
        assert!(
            error.contains("timed out: no answer to request 0 within 1.5 s"),
            "{error}"
        );
    }

    #[test]
    fn unanswered_lists_the_ids_without_an_outcome() {
        let mut report = report(4);
        report.record(3, Ok("Request 3".into()));
        report.record(1, Err(Error::Other("no".into())));
        assert_eq!(report.unanswered(), [0, 2]);
    }

    #[test]
    fn an_unknown_id_fails() {
        let mut report = report(1);
        report.record(0, Ok("Request 0".into()));
        report.record(7, Ok("Request 7".into()));
        assert!(report.finish().is_err());
    }

    #[test]
    fn when_nothing_worked_the_first_error_is_the_story() {
        let mut report = report(2);
        for id in request_ids(2) {
            report.record(
                id,
                Err(Error::Decode {
                    id,
                    source: DecodeError::InvalidUtf8,
                }),
            );
        }
        let error = report.finish().unwrap_err();
        assert!(
            matches!(
                error,
                Error::Decode {
                    id: 1,
                    source: DecodeError::InvalidUtf8
                }
            ),
            "{error:?}"
        );
    }
}
