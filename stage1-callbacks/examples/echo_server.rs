//! The echo server of article 3.2 on stage 1's callback event loop.
//!
//! Over `echo_epoll`, the loop is mio's and the reaction to readiness is a callback. The
//! server itself is `stage1_callbacks::echo::serve`; this file only picks it.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_server [-- --listen ADDR]`,
//! then `nc 127.0.0.1 PORT` in a few terminals; Ctrl-C stops it.

use std::process::ExitCode;

#[derive(clap::Parser)]
/// An echo server on stage 1's callback event loop: every line you send comes back
struct Cli {
    /// Address to listen on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

#[cfg(unix)]
fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    stage1_callbacks::echo::example_main(
        "callbacks on mio",
        &cli.listen,
        stage1_callbacks::echo::serve,
    )
}

#[cfg(not(unix))]
fn main() -> ExitCode {
    let _ = <Cli as clap::Parser>::parse();
    eprintln!("echo_server needs a Unix (Linux, macOS, the BSDs); on Windows, use WSL.");
    ExitCode::FAILURE
}
