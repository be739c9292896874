//! Running out of file descriptors must not lose clients: each echo server stops
//! accepting while `accept` fails with `EMFILE`, and serves the queued clients once
//! descriptors are free again. Its own test binary, because it lowers the process's
//! open-file limit.
//!
//! Run it: `cargo test -p stage1-callbacks --test fd_exhaustion`.

#![cfg(target_os = "linux")]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

type Serve = fn(TcpListener, &AtomicBool) -> io::Result<()>;

/// Sets the stop flag when dropped, also while a failed check unwinds, so that the scope
/// can join the server thread instead of waiting for it forever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn set_soft_limit(soft: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the call.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(read, 0, "getrlimit");
    limit.rlim_cur = soft;
    // SAFETY: `limit` is a valid `rlimit`; a soft limit at or below the hard one is allowed.
    let written = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(written, 0, "setrlimit");
}

/// Sends `line` and checks that it comes back.
fn echo(mut client: TcpStream, line: &str) {
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    client.write_all(line.as_bytes()).expect("write");
    let mut echo = vec![0; line.len()];
    client
        .read_exact(&mut echo)
        .expect("a queued client was never served");
    assert_eq!(echo, line.as_bytes());
}

/// Clients connect while the server cannot accept; once the limit is back, every one of
/// them must be echoed.
fn survives_fd_exhaustion(serve: Serve) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let stop = AtomicBool::new(false);
    let normal = shared::limits::fd_limit().expect("RLIMIT_NOFILE").soft;
    thread::scope(|scope| {
        let server = scope.spawn(|| serve(listener, &stop));
        let _stop = StopOnDrop(&stop);
        // One echo first, so the server has made its poller before descriptors run out.
        echo(TcpStream::connect(addr).expect("connect"), "warm-up\n");
        // The client sockets exist before the limit drops; connecting needs no new one.
        let sockets: Vec<Socket> = (0..3)
            .map(|_| Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket"))
            .collect();
        set_soft_limit(3); // stdin, stdout, stderr: no new descriptor for anyone
        for socket in &sockets {
            socket.connect(&addr.into()).expect("connect"); // queued, not accepted
        }
        thread::sleep(Duration::from_millis(300)); // the server meets EMFILE here
        set_soft_limit(normal);
        for (i, socket) in sockets.into_iter().enumerate() {
            echo(socket.into(), &format!("client {i}\n"));
        }
        stop.store(true, Ordering::Relaxed);
        server.join().expect("server thread").expect("serve");
    });
}

#[test]
fn every_server_serves_the_clients_queued_while_out_of_descriptors() {
    survives_fd_exhaustion(stage1_callbacks::os::select::serve);
    survives_fd_exhaustion(stage1_callbacks::os::epoll::serve);
    survives_fd_exhaustion(stage1_callbacks::echo::serve);
}
