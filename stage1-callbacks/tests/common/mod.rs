//! What the echo-server tests share: running a server on a thread of its own while the
//! test talks to it, and stopping it whatever happens.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

/// An echo server's loop: it serves `listener` until the flag is set.
pub type Serve = fn(TcpListener, &AtomicBool) -> io::Result<()>;

/// Runs `serve` on `listener` in a thread of its own while `clients` talks to it from
/// this one; then stops the server, checks that it returned cleanly, and returns what
/// `clients` returned.
pub fn serve_while<R>(
    serve: Serve,
    listener: TcpListener,
    clients: impl FnOnce(SocketAddr) -> R,
) -> R {
    let addr = listener.local_addr().expect("the listener's address");
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let server = scope.spawn(|| serve(listener, &stop));
        let outcome = {
            let _stop = StopOnDrop(&stop);
            clients(addr)
        };
        server
            .join()
            .expect("server thread")
            .expect("serve returned an error");
        outcome
    })
}

/// Sets the stop flag when dropped, also while a failed check unwinds, so that the scope
/// can join the server thread instead of waiting for it forever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
