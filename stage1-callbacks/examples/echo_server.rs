//! The echo server of article 3.2 on stage 1's callback event loop.
//!
//! Over `echo_epoll`, the loop is mio's and the reaction to readiness is a callback. The
//! server itself is `stage1_callbacks::echo::serve`; this file only binds a port.
//!
//! Run it: `cargo run -p stage1-callbacks --example echo_server [-- --listen ADDR]`,
//! then `nc 127.0.0.1 PORT` in a few terminals; Ctrl-C stops it.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

#[derive(clap::Parser)]
/// An echo server on stage 1's callback event loop: every line you send comes back
struct Cli {
    /// Address to listen on (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let listener = match TcpListener::bind(&cli.listen) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        println!(
            "echo server (callbacks on mio) on {addr}: try `nc {} {}`",
            addr.ip(),
            addr.port()
        );
    }
    // Nothing sets it: Ctrl-C ends the process, and the OS closes every socket.
    static STOP: AtomicBool = AtomicBool::new(false);
    match stage1_callbacks::echo::serve(listener, &STOP) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: the event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
