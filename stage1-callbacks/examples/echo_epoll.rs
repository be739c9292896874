//! The echo server of article 3.2 on raw `epoll(7)`: Linux's answer to select's limits.
//!
//! Over `echo_select`, the kernel keeps the list of watched sockets and returns only the
//! ready ones. The loop itself is `stage1_callbacks::os::epoll::serve`; this file only
//! picks it.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_epoll [-- --listen ADDR]`,
//! then `nc 127.0.0.1 PORT` in a few terminals; Ctrl-C stops it. Linux only: on macOS
//! and the BSDs, `echo_kqueue` is its twin.

use std::process::ExitCode;

#[derive(clap::Parser)]
/// An echo server on epoll(7): every line you send comes back (Linux only)
struct Cli {
    /// Address to listen on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    stage1_callbacks::echo::example_main("epoll", &cli.listen, stage1_callbacks::os::epoll::serve)
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = <Cli as clap::Parser>::parse();
    eprintln!(
        "echo_epoll runs on Linux only: epoll is a Linux system call.\n\
         On macOS and the BSDs, `--example echo_kqueue` is the same server on kqueue; \
         `--example echo_select` runs everywhere."
    );
    ExitCode::FAILURE
}
