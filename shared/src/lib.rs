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
//!
//! The standalone server: `cargo run -p shared --bin slow-server -- --listen
//! 127.0.0.1:8080 --delay-ms 5000`.

pub mod bench;
pub mod cli;
mod error;
pub mod limits;
pub mod memory;
pub mod protocol;
mod report;
pub mod server;
pub mod testkit;

pub use error::{Error, is_fd_exhaustion};
pub use protocol::LineDecoder;
pub use report::{Config, DEFAULT_TIMEOUT, Report, Response, request_ids};
