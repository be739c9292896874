//! The one error type every stage returns: it says what failed and what to do about it.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::protocol::DecodeError;

/// Everything that can go wrong between a stage and the slow server.
///
/// The `Display` text is written for the person at the terminal: what failed, where, and
/// the next step. Binaries print it as one line and exit non-zero.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Could not connect to the server.
    Connect {
        /// Where we tried to connect.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// Reading from or writing to an established connection failed.
    Io {
        /// What we were doing, e.g. `"sending request 7"`.
        context: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The bytes from the server are not valid protocol lines.
    Decode {
        /// The request whose answer was being read.
        id: u64,
        /// What was wrong with them.
        source: DecodeError,
    },
    /// The server answered request `id` with something other than its echo.
    WrongResponse {
        /// The request.
        id: u64,
        /// What came back instead, e.g. `ERROR line too long` or `Request 3`.
        got: String,
    },
    /// Some responses were missing, wrong or duplicated (see [`crate::Report::finish`]).
    Verification {
        /// Responses that matched their request.
        verified: usize,
        /// Responses expected.
        expected: usize,
        /// One line per problem, the first few of them.
        problems: Vec<String>,
        /// Problems not listed in `problems`.
        more: usize,
    },
    /// The work needs more of an OS resource than this process may have.
    Limit {
        /// Which limit, e.g. `open files (RLIMIT_NOFILE)`.
        limit: String,
        /// How much was asked for, in words.
        asked: String,
        /// What to do about it.
        fix: String,
    },
    /// The work did not finish in time.
    Timeout {
        /// What timed out, e.g. `no answer to request 7 within 60.0 s`.
        what: String,
    },
    /// Anything else, stated in one sentence.
    Other(String),
}

impl Error {
    /// An I/O error with a word on what we were doing.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// An I/O error while `doing` request `id`, the words in the order they are printed:
    /// `Error::request("sending", 7, e)` says `sending request 7: {e}`. Every stage's
    /// client words its errors with it, so that two stages fail with the same line.
    pub fn request(doing: &str, id: u64, source: io::Error) -> Error {
        Error::io(format!("{doing} request {id}"), source)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { addr, source }
                if source.kind() == io::ErrorKind::ConnectionRefused =>
            {
                write!(
                    f,
                    "connection refused by {addr}: no server is listening there. Start one with \
                     `cargo run -p shared --bin slow-server -- --listen {addr}`, or omit --addr \
                     to use the embedded server"
                )
            }
            Error::Connect { addr, source } if is_fd_exhaustion(source) => write!(
                f,
                "cannot connect to {addr}: {source}. This process ran out of file descriptors: \
                 raise the limit with `ulimit -n` or ask for fewer concurrent requests"
            ),
            Error::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Decode { id, source } => {
                write!(f, "bad response to request {id}: {source}")
            }
            Error::WrongResponse { id, got } => {
                write!(
                    f,
                    "request {id}: expected `Request {id}`, got `{}`",
                    Snippet(got)
                )
            }
            Error::Verification {
                verified,
                expected,
                problems,
                more,
            } => {
                write!(f, "only {verified}/{expected} responses verified: ")?;
                write!(f, "{}", problems.join("; "))?;
                if *more > 0 {
                    write!(f, "; and {more} more")?;
                }
                Ok(())
            }
            Error::Limit { limit, asked, fix } => {
                write!(f, "{asked}, more than the {limit} allows. {fix}")
            }
            Error::Timeout { what } => write!(f, "timed out: {what}"),
            Error::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } | Error::Io { source, .. } => Some(source),
            Error::Decode { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why `io_uring_setup` failed, in words a reader can act on: a kernel without io_uring
/// (`ENOSYS`), io_uring disabled by the `kernel.io_uring_disabled` sysctl or a seccomp
/// filter (`EPERM`), or the OS's own message. Stage 1's `echo_uring` and stage 4's
/// `--driver uring` each add what to run instead.
pub fn io_uring_refusal(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::ENOSYS) => "this kernel has no io_uring (ENOSYS: it needs Linux 5.6 or \
                               later, built with CONFIG_IO_URING)"
            .to_string(),
        Some(libc::EPERM) => {
            let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|value| format!("kernel.io_uring_disabled is {} here", value.trim()))
                .unwrap_or_else(|_| "kernel.io_uring_disabled is unreadable here".into());
            format!(
                "io_uring is disabled for this process (EPERM): by the sysctl \
                 kernel.io_uring_disabled (1: only the group kernel.io_uring_group may use \
                 it, 2: nobody; {sysctl}), or by a seccomp filter (Docker's default one \
                 refuses io_uring)"
            )
        }
        _ => format!("io_uring_setup failed: {error}"),
    }
}

/// `EMFILE` (this process) or `ENFILE` (the whole system) out of file descriptors.
pub fn is_fd_exhaustion(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// At most 80 characters of what a server sent, so garbage cannot flood the terminal.
struct Snippet<'a>(&'a str);

impl fmt::Display for Snippet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 80;
        match self.0.char_indices().nth(MAX) {
            None => f.write_str(self.0),
            Some((cut, _)) => write!(f, "{}... ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_says_what_to_do() {
        let error = Error::Connect {
            addr: "127.0.0.1:9".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        let text = error.to_string();
        assert!(text.contains("connection refused by 127.0.0.1:9"), "{text}");
        assert!(text.contains("slow-server"), "{text}");
        assert!(text.contains("omit --addr"), "{text}");
    }

    #[test]
    fn a_request_error_names_what_was_done_to_which_request() {
        let error = Error::request("reading the answer to", 7, io::ErrorKind::BrokenPipe.into());
        assert!(matches!(error, Error::Io { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "reading the answer to request 7: {}",
                io::Error::from(io::ErrorKind::BrokenPipe)
            )
        );
    }

    #[test]
    fn garbage_is_truncated() {
        let error = Error::WrongResponse {
            id: 1,
            got: "x".repeat(5000),
        };
        assert!(error.to_string().len() < 200);
        assert!(error.to_string().ends_with("(5000 bytes)`"));
    }
}
