//! The network benchmark's harness: every answer is checked (a wrong or missing one fails
//! the run), on both load generators (io_uring, where this machine has it, and mio), and
//! the binary reports every row it was asked for. Small and short: debug build, stage 4's
//! mio driver and the floor, no perf. No timing is asserted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use stage5_bench::net::load::{self, Driver, Load, Mark};
use stage5_bench::net::{HTTP_REQUEST, MESSAGE, Protocol, Server};

fn load(addr: SocketAddr, connections: usize, driver: Driver) -> Load {
    Load {
        addr,
        connections,
        warmup: Duration::from_millis(50),
        window: Duration::from_millis(300),
        protocol: Protocol::Echo,
        size: MESSAGE,
        paced: false,
        driver,
    }
}

/// The load generators this machine runs: mio everywhere, io_uring where it works (else
/// the test says why it is left out).
fn drivers() -> Vec<Driver> {
    match Driver::Uring.unavailable() {
        None => vec![Driver::Uring, Driver::Mio],
        Some(why) => {
            eprintln!("the io_uring load generator is not tested here: {why}");
            vec![Driver::Mio]
        }
    }
}

/// Starts `server` on a thread of its own (it serves until the test process ends).
fn start(server: Server) -> SocketAddr {
    let (send, bound) = mpsc::channel();
    thread::spawn(move || {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let result = server.serve(any_port, &|addr| send.send(addr).unwrap());
        panic!("{} stopped serving: {result:?}", server.key());
    });
    bound.recv_timeout(Duration::from_secs(10)).unwrap()
}

/// A server that echoes `good` messages on each connection, then answers with `bad`.
fn liar(good: usize, bad: impl Fn(&mut Vec<u8>) + Send + Copy + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            thread::spawn(move || {
                let mut buf = vec![0; MESSAGE];
                for answered in 0.. {
                    if stream.read_exact(&mut buf).is_err() {
                        return;
                    }
                    if answered == good {
                        bad(&mut buf);
                    }
                    if stream.write_all(&buf).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn every_answer_is_counted_once_and_the_window_is_marked() {
    let addr = start(Server::Stage4Mio);
    for driver in drivers() {
        let mut marks = Vec::new();
        let measured = load::run(&load(addr, 64, driver), &mut |mark| marks.push(mark))
            .unwrap_or_else(|e| panic!("{driver:?}: {e}"));
        assert_eq!(marks, [Mark::Start, Mark::Stop], "{driver:?}");
        assert!(measured.requests > 0, "{driver:?}");
        // Every connection was answered in the window, each answer counted once.
        assert!(measured.fewest > 0, "{driver:?}: {measured:?}");
        assert_eq!(measured.latency.count(), measured.requests, "{driver:?}");
        assert!(
            measured.elapsed >= Duration::from_millis(300),
            "{driver:?}: {measured:?}"
        );
        assert!(measured.latency.quantile(0.5) <= measured.latency.quantile(0.99));
    }
}

#[test]
fn hyper_answers_are_checked_whole() {
    let addr = start(Server::HyperStage4);
    for driver in drivers() {
        let load = Load {
            protocol: Protocol::Http,
            size: HTTP_REQUEST.len(),
            ..load(addr, 8, driver)
        };
        let measured = load::run(&load, &mut |_| {}).unwrap_or_else(|e| panic!("{driver:?}: {e}"));
        assert!(measured.fewest > 0, "{driver:?}: {measured:?}");
    }
}

#[test]
fn a_wrong_byte_fails_the_run_and_shows_both_answers() {
    let addr = liar(5, |buf| buf[10] ^= 1);
    for driver in drivers() {
        let error = load::run(&load(addr, 4, driver), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("wrong answer on connection"),
            "{driver:?}: {error}"
        );
        assert!(
            error.contains("expected") && error.contains("got"),
            "{driver:?}: {error}"
        );
    }
}

#[test]
fn an_answer_for_another_request_fails_the_run() {
    // The right size and shape, but the sequence number of the request before.
    let addr = liar(3, |buf| {
        let mut old = Vec::new();
        let id = usize::from_str_radix(std::str::from_utf8(&buf[..8]).unwrap(), 16).unwrap();
        load::message(id, 2, MESSAGE, &mut old);
        buf.copy_from_slice(&old);
    });
    for driver in drivers() {
        let error = load::run(&load(addr, 1, driver), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(error.contains("to request 3"), "{driver:?}: {error}");
    }
}

#[test]
fn a_server_that_hangs_up_fails_the_run() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream); // accept, then close at once
        }
    });
    for driver in drivers() {
        let error = load::run(&load(addr, 2, driver), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("closed by the server") || error.contains("reset"),
            "{driver:?}: {error}"
        );
    }
}

fn net(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_net"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_binary_reports_every_row_in_both_tables() {
    let (ok, stdout, stderr) = net(&[
        "--conns",
        "1,64",
        "--servers",
        "floor,stage4-mio",
        "--runs",
        "1",
        "--secs",
        "0.3",
        "--warmup",
        "0.1",
        "--no-perf",
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    for conns in ["1", "64"] {
        for server in ["floor: mio loop", "stage 4, mio"] {
            let rows: Vec<&str> = stdout
                .lines()
                .filter(|line| {
                    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                    cells.get(1) == Some(&conns) && cells.get(2) == Some(&server)
                })
                .collect();
            assert_eq!(
                rows.len(),
                2,
                "{conns} {server}, one row per table:\n{stdout}"
            );
            // Requests per second: a number above zero.
            let rate: u64 = rows[0]
                .split('|')
                .nth(3)
                .unwrap()
                .trim()
                .replace(',', "")
                .parse()
                .unwrap();
            assert!(rate > 0, "{}", rows[0]);
            // CPU per request against the floor, and no system-call count without perf.
            let cost: Vec<&str> = rows[1].split('|').map(str::trim).collect();
            assert!(cost[5].parse::<f64>().is_ok(), "{}", rows[1]);
            assert_eq!(cost[6], "n/a", "{}", rows[1]);
        }
    }
    assert!(
        stdout.contains("every answer checked byte for byte"),
        "{stdout}"
    );
    // Which load generator ran: io_uring where this machine has it.
    let ran = match Driver::Uring.unavailable() {
        None => "no runtime, on io_uring",
        Some(_) => "no runtime, on mio",
    };
    assert!(stdout.contains(ran), "{stdout}");
    assert!(stdout.contains("System calls per request: not counted (--no-perf)"));
    for line in stdout.lines().filter(|l| l.starts_with('|')) {
        assert!(line.chars().count() <= 118, "too wide for the book: {line}");
    }
}

#[test]
fn bad_flags_get_a_clear_error() {
    for (args, says) in [
        (&["--conns", "0"][..], "--conns"),
        (&["--servers", "nginx"][..], "no server `nginx`"),
        (&["--size", "8"][..], "--size"),
        (
            &["--load-driver", "epoll"][..],
            "--load-driver epoll: uring or mio",
        ),
    ] {
        let (ok, stdout, stderr) = net(args);
        assert!(!ok, "{args:?} ran:\n{stdout}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
#[cfg(target_os = "linux")]
fn without_io_uring_the_load_runs_on_mio_and_says_why() {
    let run = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_net"))
            .env("STAGE5_LOAD_URING_SIMULATE", "EPERM")
            .args(["--conns", "1", "--servers", "floor", "--runs", "1"])
            .args(["--secs", "0.2", "--warmup", "0", "--no-perf"])
            .args(extra)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // By default: on mio, and the table's notes say why not io_uring.
    let (ok, stdout, stderr) = run(&[]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("no runtime, on mio"), "{stdout}");
    assert!(stdout.contains("(not io_uring: "), "{stdout}");
    assert!(stdout.contains("--load-driver mio"), "{stdout}");
    // Asked for io_uring: a clear refusal, no run.
    let (ok, stdout, stderr) = run(&["--load-driver", "uring"]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("--load-driver uring: "), "{stderr}");
    assert!(stderr.contains("simulated"), "{stderr}");
}
