//! The options the million-connection run needs: servers sharing a port, a stats line
//! that counts what is open and waiting, and the memory each connection costs.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

use shared::server::{ServerConfig, ServerStats, SlowServer};
use support::{ServerProcess, send_request};

fn reuse_port_server(listen: &str) -> std::io::Result<SlowServer> {
    SlowServer::start_with(ServerConfig {
        reuse_port: true,
        ..ServerConfig::new(listen.parse().unwrap(), Duration::from_millis(50))
    })
}

fn read_line(stream: TcpStream) -> String {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn two_servers_share_one_port_with_reuse_port() {
    let first = reuse_port_server("127.0.0.1:0").unwrap();
    let addr = first.addr();
    let second = reuse_port_server(&addr.to_string()).expect("a second server on the port");
    // Without the option, the port is taken.
    let refused = SlowServer::start_with(ServerConfig::new(addr, Duration::ZERO)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::AddrInUse, "{refused}");
    const N: u64 = 64;
    let clients: Vec<TcpStream> = (0..N).map(|id| send_request(addr, id)).collect();
    for (id, client) in clients.into_iter().enumerate() {
        assert_eq!(read_line(client), format!("Request {id}\n"));
    }
    let (a, b) = (first.stats().accepted, second.stats().accepted);
    assert_eq!(a + b, N, "every connection went to one of them");
    // Linux spreads connections over the sockets by a hash of the addresses: with 64
    // source ports, one server getting none has odds of 2^-63. macOS does not balance.
    if cfg!(target_os = "linux") {
        assert!(a > 0 && b > 0, "{a} and {b}");
    }
}

#[test]
fn the_stats_line_counts_connections_open_and_requests_waiting() {
    let mut server = ServerProcess::start(&["--delay-ms", "300", "--stats-ms", "10"]);
    let clients: Vec<TcpStream> = (0..5).map(|id| send_request(server.addr, id)).collect();
    let stats = server.stats_until("5 waiting", |s| s.waiting == 5);
    assert_eq!(
        (stats.open, stats.peak_open, stats.accepted),
        (5, 5, 5),
        "{stats:?}"
    );
    assert_eq!((stats.answered, stats.peak_waiting), (0, 5), "{stats:?}");
    for (id, client) in clients.into_iter().enumerate() {
        assert_eq!(read_line(client), format!("Request {id}\n"));
    }
    // The clients are gone: their connections close, the peaks stay.
    let stats = server.stats_until("all closed", |s| s.open == 0);
    let expected = ServerStats {
        open: 0,
        peak_open: 5,
        waiting: 0,
        peak_waiting: 5,
        accepted: 5,
        answered: 5,
        ..ServerStats::default()
    };
    assert_eq!(stats, expected);
}

#[test]
fn flag_values_out_of_range_are_usage_errors() {
    shared::testkit::output::check_usage_errors(
        env!("CARGO_BIN_EXE_slow-server"),
        &[
            ["--backlog", "0"],
            ["--stats-ms", "0"],
            ["--listen", ":::"],
            ["--listen", "localhost:99999"],
            ["--delay-ms", "soon"],
        ],
    );
}

/// The million-connection run needs each connection to cost at most about 1 KiB of the
/// server's memory: 15,000 connections, each with one request waiting, must grow its
/// resident memory by at most 15 MiB.
#[cfg(target_os = "linux")]
#[test]
fn a_waiting_connection_costs_the_server_at_most_1_kib() {
    let limit = shared::limits::raise_fd_limit().unwrap();
    // This process holds the client ends; the server raises its own limit likewise.
    let n = 15_000.min(limit.soft.saturating_sub(200)) as u64;
    assert!(
        n >= 2_000,
        "RLIMIT_NOFILE {} is too low for this test",
        limit.soft
    );
    let mut server = ServerProcess::start(&[
        "--delay-ms",
        "600000",
        "--idle-timeout-ms",
        "0",
        "--stats-ms",
        "20",
    ]);
    server.stats_until("started", |_| true);
    let before = rss(server.pid());
    let clients: Vec<TcpStream> = (0..n).map(|id| send_request(server.addr, id)).collect();
    server.stats_until("all waiting", |s| s.waiting == n);
    let after = rss(server.pid());
    let per_connection = after.saturating_sub(before) as f64 / n as f64;
    println!(
        "{n} connections with one request waiting each: server RSS {} KiB -> {} KiB, {:.0} \
         bytes per connection",
        before / 1024,
        after / 1024,
        per_connection
    );
    assert!(
        per_connection <= 1024.0,
        "{per_connection:.0} bytes per connection"
    );
    drop(clients);
}

#[cfg(target_os = "linux")]
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    shared::memory::kib_field(&status, "VmRSS:").expect("VmRSS")
}
