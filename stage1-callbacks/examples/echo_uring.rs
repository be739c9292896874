//! The echo server of article 3.2 on raw `io_uring(7)`: completion instead of readiness.
//!
//! Over `echo_epoll`, the loop no longer asks which socket is ready: it submits the
//! accept, each receive and each send as an operation, and the kernel reports each one
//! done. The loop itself is `stage1_callbacks::os::uring::serve`; this file only picks it.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_uring [-- --listen ADDR]`, then
//! `nc 127.0.0.1 PORT` in a few terminals; Ctrl-C stops it. Linux 5.6 or later only;
//! `STAGE1_URING_SIMULATE=EPERM` (or `ENOSYS`) shows what it says where io_uring is
//! unavailable.

use std::process::ExitCode;

use stage1_callbacks::echo::EchoCli;

/// The first line of `--help`.
const ABOUT: &str = "An echo server on io_uring(7): every line you send comes back (Linux only)";

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let cli = EchoCli::parse_with_about(ABOUT);
    // Before listening: where io_uring is unavailable, say why and what to run instead.
    if let Err(e) = stage1_callbacks::os::uring::check() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    stage1_callbacks::echo::example_main("io_uring", cli.listen, stage1_callbacks::os::uring::serve)
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    EchoCli::parse_with_about(ABOUT);
    eprintln!(
        "echo_uring runs on Linux only: io_uring is a Linux interface (5.6 or later).\n\
         On macOS and the BSDs, `--example echo_kqueue` is the same server on kqueue \
         (readiness, not completion); `--example echo_select` runs everywhere."
    );
    ExitCode::FAILURE
}
