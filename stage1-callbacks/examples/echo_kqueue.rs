//! The echo server of article 3.2 on raw `kqueue(2)`: epoll's twin on macOS and the BSDs.
//!
//! Over `echo_select`, the kernel keeps the list of watched sockets and returns only the
//! ready ones, like `echo_epoll` on Linux. The loop itself is
//! `stage1_callbacks::os::kqueue::serve`; this file only picks it.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_kqueue [-- --listen ADDR]`,
//! then `nc 127.0.0.1 PORT` in a few terminals; Ctrl-C stops it. macOS and the BSDs only.

use std::process::ExitCode;

use stage1_callbacks::echo::EchoCli;

/// The first line of `--help`.
const ABOUT: &str =
    "An echo server on kqueue(2): every line you send comes back (macOS and the BSDs only)";

#[cfg(kqueue)]
fn main() -> ExitCode {
    let cli = EchoCli::parse_with_about(ABOUT);
    stage1_callbacks::echo::example_main("kqueue", cli.listen, stage1_callbacks::os::kqueue::serve)
}

#[cfg(not(kqueue))]
fn main() -> ExitCode {
    EchoCli::parse_with_about(ABOUT);
    eprintln!(
        "echo_kqueue runs on macOS and the BSDs only: kqueue is their system call.\n\
         On Linux, `--example echo_epoll` is the same server on epoll; \
         `--example echo_select` runs everywhere."
    );
    ExitCode::FAILURE
}
