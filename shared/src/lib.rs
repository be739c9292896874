//! What every stage shares: the protocol, the slow server, the workload, the report and
//! the command line.
//!
//! Read this crate's docs before stage 0. The stages differ in how they wait for I/O;
//! everything they must agree on lives here, so that `diff`ing two stages shows only the
//! lesson.
//!
//! - [`protocol`]: `Request {id}\n` lines and the incremental [`LineDecoder`] every
//!   stage feeds raw bytes into.
//! - [`server`]: the slow server, an echo that waits (5 s by default, as in the article).
//! - [`Report`]: the article's demo workload, verified: every id answered exactly once
//!   with its own line.
//! - [`cli`]: `--addr`, `--delay-ms`, `--requests`, and the `main` every stage runs.
//! - [`limits`]: file-descriptor and memory-mapping budgets, checked before work starts.
//! - [`memory`]: resident memory, for bytes-per-task figures.
//! - [`bench`](mod@bench): the article's sleep benchmark, as each stage's example runs it.
//! - [`testkit`]: servers that misbehave on purpose, for the stages' tests.
//! - `uring` (Linux): io_uring set up, probed and refused the same way in every stage
//!   that uses it.
//!
//! The standalone server: `cargo run -p shared --bin slow-server -- --listen
//! 127.0.0.1:8080 --delay-ms 5000`.
//!
//! Platforms: Linux (x86_64, aarch64) and macOS (Apple Silicon, Intel). Windows gets one
//! clear message at build time instead of a wall of `libc` errors: the stages are about
//! Unix readiness APIs (`select`, `epoll`, `kqueue`) and Unix limits.

// The one place that says what is not supported; everything below is Unix-only, so the
// build stops at this message and nothing else.
#[cfg(not(unix))]
compile_error!(
    "this workspace runs on Linux and macOS only: its stages teach Unix readiness APIs \
     (select, epoll, kqueue) and Unix limits (RLIMIT_NOFILE, vm.max_map_count). On \
     Windows, use WSL 2 (`wsl --install`, then build inside the Linux distribution)."
);

#[cfg(unix)]
pub mod bench;
#[cfg(unix)]
pub mod cli;
#[cfg(unix)]
mod error;
#[cfg(unix)]
pub mod limits;
#[cfg(unix)]
pub mod memory;
#[cfg(unix)]
pub mod protocol;
#[cfg(unix)]
mod report;
#[cfg(unix)]
pub mod server;
#[cfg(unix)]
pub mod testkit;
#[cfg(target_os = "linux")]
pub mod uring;

#[cfg(unix)]
pub use error::{Error, io_uring_refusal, is_fd_exhaustion};
#[cfg(unix)]
pub use protocol::LineDecoder;
#[cfg(unix)]
pub use report::{Config, DEFAULT_TIMEOUT, Report, Response, request_ids};
