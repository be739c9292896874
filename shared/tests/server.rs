//! The slow server, tested the way a client sees it: over real sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use shared::protocol::MAX_LINE_LEN;
use shared::server::{MAX_PIPELINED, ServerConfig};
use shared::server::{ServerStats, SlowServer};

const DELAY: Duration = Duration::from_millis(200);
/// Upper bound for anything that should happen "soon": generous, so a loaded CI machine
/// cannot make a correct server fail, yet far below what a serial server would need.
const PATIENCE: Duration = Duration::from_secs(10);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

fn ask(addr: SocketAddr, line: &str) -> String {
    let mut stream = connect(addr);
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    read_line(&mut BufReader::new(stream))
}

fn read_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("a line before the timeout");
    line
}

/// Waits until `check` holds for the server's counters, or fails after PATIENCE.
fn eventually(server: &SlowServer, what: &str, check: impl Fn(&ServerStats) -> bool) {
    let start = Instant::now();
    while !check(&server.stats()) {
        assert!(start.elapsed() < PATIENCE, "{what}: {:?}", server.stats());
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn ten_concurrent_clients_are_answered_together() {
    let server = SlowServer::start(DELAY).unwrap();
    let addr = server.addr();
    let start = Instant::now();
    let clients: Vec<_> = (0..10)
        .map(|id| thread::spawn(move || (id, ask(addr, &format!("Request {id}")))))
        .collect();
    for client in clients {
        let (id, answer) = client.join().unwrap();
        assert_eq!(answer, format!("Request {id}\n"));
    }
    let elapsed = start.elapsed();
    // Served one after another, ten answers would take 10 x 200 ms = 2 s.
    assert!(elapsed >= DELAY, "answered before the delay: {elapsed:?}");
    assert!(elapsed < 5 * DELAY, "not concurrent: {elapsed:?}");
    // The counter moves just after the write that the client may already have read.
    eventually(&server, "ten answers counted", |s| s.answered == 10);
    let stats = server.stats();
    assert_eq!((stats.accepted, stats.errors), (10, 0));
    assert!(stats.peak_open >= 2, "{stats:?}");
}

#[test]
fn each_answer_waits_the_delay_from_its_own_arrival() {
    let server = SlowServer::start(DELAY).unwrap();
    let mut stream = connect(server.addr());
    let start = Instant::now();
    stream.write_all(b"Request 1\n").unwrap();
    thread::sleep(DELAY / 2);
    stream.write_all(b"Request 2\n").unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(read_line(&mut reader), "Request 1\n");
    let first = start.elapsed();
    assert_eq!(read_line(&mut reader), "Request 2\n");
    let second = start.elapsed();
    assert!(first >= DELAY, "{first:?}");
    assert!(second >= DELAY + DELAY / 2, "{second:?}");
}

#[test]
fn pipelined_lines_are_answered_in_order() {
    let server = SlowServer::start(DELAY).unwrap();
    let mut stream = connect(server.addr());
    let lines: String = (0..100).map(|id| format!("Request {id}\n")).collect();
    // Dribble them in uneven pieces to exercise the server's line decoder.
    for chunk in lines.as_bytes().chunks(7) {
        stream.write_all(chunk).unwrap();
    }
    let mut reader = BufReader::new(stream);
    for id in 0..100 {
        assert_eq!(read_line(&mut reader), format!("Request {id}\n"));
    }
    eventually(&server, "all 100 counted", |s| s.answered == 100);
}

#[test]
fn a_client_that_half_closes_still_gets_its_answers() {
    let server = SlowServer::start(DELAY).unwrap();
    let mut stream = connect(server.addr());
    stream.write_all(b"Request 1\nRequest 2\n").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answers = String::new();
    stream.read_to_string(&mut answers).unwrap();
    assert_eq!(answers, "Request 1\nRequest 2\n");
    eventually(&server, "closed after answering", |s| s.open == 0);
}

/// Sends `bad` on one connection while a good client waits on another; returns what the
/// bad connection received before the server closed it.
fn bad_input_beside_a_good_client(bad: &[u8]) -> String {
    let server = SlowServer::start(DELAY).unwrap();
    let addr = server.addr();
    let good = thread::spawn(move || ask(addr, "Request 7"));
    let mut stream = connect(addr);
    stream.write_all(bad).unwrap();
    let mut received = String::new();
    // The server closes the connection after the ERROR line: read to EOF.
    stream
        .read_to_string(&mut received)
        .expect("EOF after the error");
    drop(stream); // our side of the close; the server lingers until it sees it
    assert_eq!(
        good.join().unwrap(),
        "Request 7\n",
        "the good client was disturbed"
    );
    eventually(&server, "one error counted", |s| {
        s.errors == 1 && s.open == 0
    });
    received
}

#[test]
fn invalid_utf8_gets_an_error_line_and_a_close() {
    assert_eq!(
        bad_input_beside_a_good_client(b"Request \xff\n"),
        "ERROR invalid utf-8\n"
    );
}

#[test]
fn an_oversized_line_gets_an_error_line_and_a_close() {
    let mut bad = vec![b'x'; 64 * 1024];
    bad.push(b'\n');
    assert_eq!(
        bad_input_beside_a_good_client(&bad),
        "ERROR line too long\n"
    );
}

#[test]
fn an_oversized_line_is_refused_without_waiting_for_its_newline() {
    assert_eq!(
        bad_input_beside_a_good_client(&[b'x'; MAX_LINE_LEN + 1]),
        "ERROR line too long\n"
    );
}

#[test]
fn a_client_that_vanishes_mid_delay_is_cleaned_up() {
    let server = SlowServer::start(DELAY).unwrap();
    let addr = server.addr();
    let mut quitter = connect(addr);
    quitter.write_all(b"Request 1\n").unwrap();
    drop(quitter);
    assert_eq!(ask(addr, "Request 2"), "Request 2\n");
    eventually(&server, "the vanished client is closed", |s| s.open == 0);
    assert_eq!(server.stats().errors, 0);
}

#[test]
fn a_thousand_concurrent_connections_are_all_answered() {
    const N: usize = 1000;
    shared::limits::check_connections(2 * N as u64).unwrap();
    let server = SlowServer::start(DELAY).unwrap();
    let mut streams: Vec<TcpStream> = (0..N).map(|_| connect(server.addr())).collect();
    for (id, stream) in streams.iter_mut().enumerate() {
        stream
            .write_all(format!("Request {id}\n").as_bytes())
            .unwrap();
    }
    for (id, stream) in streams.into_iter().enumerate() {
        assert_eq!(
            read_line(&mut BufReader::new(stream)),
            format!("Request {id}\n")
        );
    }
    let stats = server.stats();
    assert_eq!(stats.accepted, N as u64);
    assert_eq!(stats.peak_open, N as u64, "all {N} were open at once");
    eventually(&server, "all answered", |s| s.answered == N as u64);
}

#[test]
fn dropping_the_server_closes_its_connections() {
    let server = SlowServer::start(Duration::from_secs(60)).unwrap();
    let mut stream = connect(server.addr());
    stream.write_all(b"Request 1\n").unwrap();
    eventually(&server, "accepted", |s| s.open == 1);
    let start = Instant::now();
    drop(server);
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
    assert!(start.elapsed() < PATIENCE);
}

/// More lines in one write than the server lets wait at once ([`MAX_PIPELINED`]): it
/// pauses reading after 1,024 with the rest already in its decoder, and must answer those
/// too, also when the client has half-closed and the socket has nothing more to say.
#[test]
fn lines_pipelined_past_the_pause_are_all_answered() {
    let server = SlowServer::start(Duration::from_millis(20)).unwrap();
    for (lines, half_close) in [(MAX_PIPELINED + 1, true), (MAX_PIPELINED + 5, false)] {
        let mut stream = connect(server.addr());
        let sent: String = (0..lines).map(|id| format!("Request {id}\n")).collect();
        stream.write_all(sent.as_bytes()).unwrap();
        if half_close {
            stream.shutdown(Shutdown::Write).unwrap();
        }
        let mut reader = BufReader::new(stream);
        for id in 0..lines {
            let line = read_line(&mut reader);
            assert_eq!(line, format!("Request {id}\n"), "{lines} lines sent");
        }
        if half_close {
            let mut rest = String::new();
            reader.read_to_string(&mut rest).unwrap();
            assert_eq!(rest, "", "EOF after the last answer");
        }
    }
}

/// A client that sends and never reads: once its waiting lines and unread answers pass
/// `MAX_UNSENT`, the server stops reading from it, so the client's writes stall when the
/// kernel's buffers are full instead of the server buffering everything. When the client
/// reads at last, every line it managed to send is answered.
#[test]
fn a_client_that_never_reads_is_held_back_not_buffered() {
    // Far more than the kernel buffers between the two ends (up to 32 MiB receive and
    // 4 MiB send on this machine's defaults) plus what the server may hold.
    const LIMIT: usize = 128 << 20;
    let server = SlowServer::start(Duration::ZERO).unwrap();
    let mut stream = connect(server.addr());
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let line = format!("{}\n", "x".repeat(1000));
    let mut sent = 0; // bytes, possibly ending inside a line
    let stalled = loop {
        if sent >= LIMIT {
            break false;
        }
        match stream.write(&line.as_bytes()[sent % line.len()..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
            Err(e) => panic!("write after {sent} bytes: {e}"),
        }
    };
    assert!(
        stalled,
        "the server read all {} MiB a client never read answers for",
        sent >> 20
    );
    // Now read, and finish the last line so that every answer is a whole line.
    let reader = {
        let stream = stream.try_clone().unwrap();
        thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let (mut answers, mut answer) = (0, String::new());
            while reader.read_line(&mut answer).expect("an answer") > 0 {
                assert_eq!(answer.len(), 1001, "answer {answers}");
                answers += 1;
                answer.clear();
            }
            answers
        })
    };
    stream.set_write_timeout(None).unwrap();
    let rest = (line.len() - sent % line.len()) % line.len();
    stream
        .write_all(&line.as_bytes()[line.len() - rest..])
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let lines = (sent + rest) / line.len();
    assert_eq!(
        reader.join().unwrap(),
        lines,
        "every line sent was answered"
    );
}

fn server_with_idle_timeout(delay: Duration, idle: Duration) -> SlowServer {
    SlowServer::start_with(ServerConfig {
        idle_timeout: Some(idle),
        ..ServerConfig::new("127.0.0.1:0".parse().unwrap(), delay)
    })
    .unwrap()
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let server = server_with_idle_timeout(DELAY, idle);
    // One that never says a word, one that goes quiet after its answer.
    let mut silent = connect(server.addr());
    let mut done = connect(server.addr());
    done.write_all(b"Request 1\n").unwrap();
    let start = Instant::now();
    let mut reader = BufReader::new(done);
    assert_eq!(read_line(&mut reader), "Request 1\n");
    let mut rest = String::new();
    reader
        .read_to_string(&mut rest)
        .expect("EOF, not a timeout");
    assert_eq!(rest, "");
    assert!(start.elapsed() >= DELAY + idle, "{:?}", start.elapsed());
    assert_eq!(silent.read(&mut [0; 16]).expect("EOF, not a timeout"), 0);
    eventually(&server, "both counted", |s| {
        s.idle_closed == 2 && s.open == 0
    });
}

/// Only a connection with nothing pending is idle: a line waiting for a delay longer
/// than the idle timeout is still answered, and so is a client that keeps talking.
#[test]
fn the_idle_timeout_spares_busy_connections() {
    let idle = Duration::from_secs(1);
    let server = server_with_idle_timeout(2 * idle, idle);
    let mut stream = connect(server.addr());
    stream.write_all(b"Request 1\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert_eq!(read_line(&mut reader), "Request 1\n");
    // A line in pieces, each well within the idle timeout of the one before, together
    // longer than it.
    for piece in ["Req", "ues", "t", " ", "2", "\n"] {
        stream.write_all(piece.as_bytes()).unwrap();
        thread::sleep(idle / 4);
    }
    assert_eq!(read_line(&mut reader), "Request 2\n");
    assert_eq!(server.stats().idle_closed, 0);
}

#[test]
fn a_crlf_line_is_answered_without_its_cr() {
    let server = SlowServer::start(DELAY).unwrap();
    assert_eq!(ask(server.addr(), "Request 1\r"), "Request 1\n");
}

/// `slow-server --listen localhost:PORT`, as `--addr` takes host names too.
#[test]
fn the_binary_listens_on_a_host_name() {
    use std::process::{Command, Stdio};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_slow-server"))
        .args(["--listen", &format!("localhost:{port}"), "--delay-ms", "10"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start slow-server");
    let mut banner = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    // `slow-server: listening on ADDR, ...`: localhost may be 127.0.0.1 or ::1.
    let listening: Option<SocketAddr> = banner
        .split_once("listening on ")
        .and_then(|(_, rest)| rest.split(',').next()?.parse().ok());
    let answer = listening.map(|addr| {
        assert!(addr.ip().is_loopback() && addr.port() == port, "{addr}");
        ask(addr, "Request 5")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answer.as_deref(), Some("Request 5\n"), "{banner}");
}
