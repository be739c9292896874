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

use stage1_callbacks::echo::EchoCli;

/// The first line of `--help`.
const ABOUT: &str = "An echo server on epoll(7): every line you send comes back (Linux only)";

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let cli = EchoCli::parse_with_about(ABOUT);
    stage1_callbacks::echo::example_main("epoll", cli.listen, stage1_callbacks::os::epoll::serve)
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    EchoCli::parse_with_about(ABOUT);
    eprintln!(
        "echo_epoll runs on Linux only: epoll is a Linux system call.\n\
         On macOS and the BSDs, `--example echo_kqueue` is the same server on kqueue; \
         `--example echo_select` runs everywhere."
    );
    ExitCode::FAILURE
}
