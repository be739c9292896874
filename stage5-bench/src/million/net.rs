//! What the real run and the floor do the same way: start a connect from a source
//! address of our choosing, and name what went wrong when one fails.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

// ANCHOR: start_connect
/// Starts a non-blocking connect from `source` to `server` and returns the socket with
/// the handshake under way (it is writable once the handshake is over).
///
/// One server address and port take at most 28,232 connections from one source address
/// (the ports of `net.ipv4.ip_local_port_range`), so the clients come from many: all of
/// 127.0.0.0/8 is the loopback interface on Linux. `IP_BIND_ADDRESS_NO_PORT` lets `bind`
/// fix the address but leave the port to `connect`, which may then reuse a port that
/// already serves another destination; without it, `bind` would reserve a port per socket
/// for every destination at once.
pub fn start_connect(source: Ipv4Addr, server: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    #[cfg(target_os = "linux")]
    {
        shared::limits::bind_address_no_port(&socket)?;
        socket.bind(&SocketAddr::from((source, 0)).into())?;
    }
    // Elsewhere only 127.0.0.1 is local, which the kernel picks anyway.
    #[cfg(not(target_os = "linux"))]
    let _ = source;
    match socket.connect(&server.into()) {
        Ok(()) => Ok(socket),
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => Ok(socket),
        Err(error) => Err(error),
    }
}
// ANCHOR_END: start_connect

/// A short name for why a system call failed, used as a key in the failure counts:
/// `refused`, `timed_out`, `no_port`, ...
pub fn kind_of(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::ECONNREFUSED) => "refused",
        Some(libc::ETIMEDOUT) => "timed_out",
        Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE) => "no_port",
        Some(libc::EMFILE) => "no_fds_process",
        Some(libc::ENFILE) => "no_fds_machine",
        Some(libc::ENOBUFS | libc::ENOMEM) => "no_memory",
        Some(libc::ECONNRESET) => "reset",
        Some(libc::EPIPE) => "broken_pipe",
        _ => match error.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::WriteZero => "closed",
            _ => "other",
        },
    }
}

/// What a failure count means and which limit to look at, for the report. Keys are
/// `step_cause`: `connect_no_port`, `read_reset`, `answer_wrong`.
pub fn explain(key: &str) -> &'static str {
    let cause = key.split_once('_').map_or(key, |(_step, cause)| cause);
    match cause {
        "refused" => "no server listened: a shard was gone",
        "timed_out" => {
            "the handshake was dropped again and again: full accept queues (net.core.somaxconn) \
             or servers too slow to accept"
        }
        "no_port" => {
            "a source address ran out of ports (net.ipv4.ip_local_port_range, and the number \
             of source addresses)"
        }
        "no_fds_process" => "a process reached its open-file limit (RLIMIT_NOFILE, `ulimit -n`)",
        "no_fds_machine" => "the machine reached fs.file-max",
        "no_memory" => "the kernel refused memory for a socket (net.ipv4.tcp_mem, MemAvailable)",
        "reset" | "broken_pipe" | "closed" => "the server closed the connection before answering",
        "wrong" => "an answer that was not its request's line",
        "decode" => "bytes that were not a protocol line",
        "deadline" => "still unfinished when the phase's deadline passed",
        "stopped" => "not finished when the run stopped: see why below",
        "interrupted" => "not finished when the run was interrupted",
        _ => "an error the OS named; the client printed the first one",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_short_names_and_explanations() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(kind_of(&refused), "refused");
        let no_fds = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(kind_of(&no_fds), "no_fds_process");
        assert!(explain("connect_no_fds_process").contains("RLIMIT_NOFILE"));
        assert!(explain("connect_no_port").contains("ip_local_port_range"));
        assert!(explain("answer_deadline").contains("deadline"));
    }

    #[test]
    fn a_connect_to_nobody_is_refused() {
        // A port nobody listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let server = SocketAddr::from(([127, 0, 0, 1], port));
        let source = if cfg!(target_os = "linux") {
            Ipv4Addr::new(127, 0, 0, 2)
        } else {
            Ipv4Addr::LOCALHOST
        };
        let socket = start_connect(source, server).unwrap();
        // Wait for the handshake to end, one way or the other.
        let mut error = None;
        for _ in 0..200 {
            if let Some(e) = socket.take_error().unwrap() {
                error = Some(e);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(kind_of(&error.expect("a refusal")), "refused");
    }
}
