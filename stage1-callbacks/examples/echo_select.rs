//! The echo server of article 3.2 on raw `select(2)`: one thread, every client.
//!
//! Over stage 0's thread per connection, one loop asks the kernel which sockets are ready.
//! The loop itself is `stage1_callbacks::os::select::serve`; this file only picks it.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_select [-- --listen ADDR]`,
//! then `nc 127.0.0.1 PORT` in a few terminals; Ctrl-C stops it.

use std::process::ExitCode;

use stage1_callbacks::echo::EchoCli;

/// The first line of `--help`.
const ABOUT: &str = "An echo server on select(2): every line you send comes back";

#[cfg(unix)]
fn main() -> ExitCode {
    let cli = EchoCli::parse_with_about(ABOUT);
    stage1_callbacks::echo::example_main("select", cli.listen, stage1_callbacks::os::select::serve)
}

#[cfg(not(unix))]
fn main() -> ExitCode {
    EchoCli::parse_with_about(ABOUT);
    eprintln!("echo_select needs a Unix (Linux, macOS, the BSDs); on Windows, use WSL.");
    ExitCode::FAILURE
}
