//! The echo server of article 3.2 on raw `select(2)`: one thread, every client.
//!
//! Over stage 0's thread per connection, one loop asks the kernel which sockets are ready.
//! The loop itself is `stage1_callbacks::os::select::serve`; this file only picks it.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_select [-- --listen ADDR]`,
//! then `nc 127.0.0.1 PORT` in a few terminals; Ctrl-C stops it.

use std::process::ExitCode;

#[derive(clap::Parser)]
/// An echo server on select(2): every line you send comes back
struct Cli {
    /// Address to listen on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

#[cfg(unix)]
fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    stage1_callbacks::echo::example_main("select", &cli.listen, stage1_callbacks::os::select::serve)
}

#[cfg(not(unix))]
fn main() -> ExitCode {
    let _ = <Cli as clap::Parser>::parse();
    eprintln!("echo_select needs a Unix (Linux, macOS, the BSDs); on Windows, use WSL.");
    ExitCode::FAILURE
}
