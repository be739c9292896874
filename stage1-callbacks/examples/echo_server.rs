//! The echo server of article 3.2 on stage 1's callback event loop.
//!
//! Over `echo_epoll`, the loop is mio's and the reaction to readiness is a callback. The
//! server itself is `stage1_callbacks::echo::serve`; this file only picks it.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_server [-- --listen ADDR]`,
//! then `nc 127.0.0.1 PORT` in a few terminals; Ctrl-C stops it.

use std::process::ExitCode;

use stage1_callbacks::echo::EchoCli;

/// The first line of `--help`.
const ABOUT: &str =
    "An echo server on stage 1's callback event loop: every line you send comes back";

#[cfg(unix)]
fn main() -> ExitCode {
    let cli = EchoCli::parse_with_about(ABOUT);
    stage1_callbacks::echo::example_main(
        "callbacks on mio",
        cli.listen,
        stage1_callbacks::echo::serve,
    )
}

#[cfg(not(unix))]
fn main() -> ExitCode {
    EchoCli::parse_with_about(ABOUT);
    eprintln!("echo_server needs a Unix (Linux, macOS, the BSDs); on Windows, use WSL.");
    ExitCode::FAILURE
}
