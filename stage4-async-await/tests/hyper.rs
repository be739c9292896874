//! hyper on our runtime: its server answers many clients at once, each with its own
//! answer; its client fails clearly on a refused port and on garbage; its timeouts run on
//! our timers; and a blocking HTTP request in a task stalls the loop where hyper's
//! client does not (the `hyper` and `blocking_http` examples, asserted).

#[path = "../examples/hyper/blocking.rs"]
mod blocking;
#[path = "../examples/hyper/echo.rs"]
mod echo;

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::testkit::{Misbehaviour, RogueServer, refused_addr};
use shared::{Config, Error, Report, limits, request_ids};
use stage4_async_await::net::TcpListener;
use stage4_async_await::{block_on, join_all, spawn, timeout};

use blocking::{How, fetch_all};
use echo::{FetchError, Server, ServerThread, Stats, fetch};

const MS: Duration = Duration::from_millis(1);

/// Upper bound for anything that must not hang; generous for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);

/// `requests` hyper clients at once against a hyper server on the same event loop:
/// the verified report and what the server counted.
fn serve_and_fetch(requests: u64, delay: Duration) -> (Report, Arc<Stats>) {
    limits::check_connections(2 * requests).expect("enough file descriptors");
    let stats = Arc::new(Stats::default());
    let report = block_on(async {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        let _server = spawn(Server::new(delay).serve(listener, Arc::clone(&stats)));
        let report = Rc::new(RefCell::new(Report::start(&Config::new(addr, requests))));
        let clients = request_ids(requests).map(|id| {
            let report = Rc::clone(&report);
            spawn(async move {
                let answer = fetch(addr, id).await.map_err(Error::from);
                report.borrow_mut().record(id, answer);
            })
        });
        let joined = timeout(PATIENCE, join_all(clients.collect::<Vec<_>>())).await;
        for client in joined.expect("every client done in time") {
            client.unwrap();
        }
        report
    });
    let report = Rc::into_inner(report).unwrap().into_inner();
    (report.finish().expect("every answer verified"), stats)
}

#[test]
fn the_server_answers_every_concurrent_client_with_its_own_body() {
    let requests = 100;
    let (report, stats) = serve_and_fetch(requests, Duration::ZERO);
    shared::testkit::contract::every_request_answered_once(&report, requests);
    assert_eq!(stats.answered(), requests);
    assert_eq!(stats.failed_connections(), 0);
}

#[test]
fn a_slow_handler_keeps_every_client_waiting_at_once() {
    let (requests, delay) = (50, 300 * MS);
    let (report, stats) = serve_and_fetch(requests, delay);
    assert_eq!(report.verified() as u64, requests);
    for response in report.responses() {
        assert!(
            response.at >= delay,
            "answered before the delay: {response:?}"
        );
    }
    // One after another, the peak would be 1 (and the run 50 delays long). Not exactly
    // `requests`: on a loaded machine the first may be answered before the last arrive.
    assert!(
        stats.peak_waiting() > requests / 2,
        "not concurrent: at most {} waiting at once",
        stats.peak_waiting()
    );
}

#[test]
fn a_refused_port_is_a_clear_connect_error() {
    let addr = refused_addr();
    let error = block_on(fetch(addr, 7)).expect_err("nobody listens there");
    match &error {
        FetchError::Connect { addr: to, source } => {
            assert_eq!(*to, addr);
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a refused connection, got {other:?}"),
    }
    let message = error.to_string().to_lowercase();
    assert!(
        message.contains(&format!("cannot connect to {addr}")),
        "{message}"
    );
    assert!(message.contains("connection refused"), "{message}");
}

#[test]
fn garbage_from_the_server_is_a_clear_error_and_the_loop_goes_on() {
    use Misbehaviour::*;
    let good = ServerThread::start(Server::new(Duration::ZERO)).unwrap();
    block_on(async {
        for misbehaviour in [WrongId, ErrorLine, InvalidUtf8, CloseMidLine, Hangup] {
            let rogue = RogueServer::start(misbehaviour).unwrap();
            let started = Instant::now();
            let answer = timeout(PATIENCE, fetch(rogue.addr(), 3)).await;
            let error = match answer {
                Err(_) => panic!("{misbehaviour:?}: no error within {PATIENCE:?}"),
                Ok(Ok(body)) => panic!("{misbehaviour:?} passed with {body:?}"),
                Ok(Err(error)) => error,
            };
            assert!(started.elapsed() < PATIENCE);
            let message = error.to_string();
            let named = match (&error, misbehaviour) {
                // Lines that are not HTTP: hyper's parser names the first thing wrong.
                (FetchError::Http { id: 3, source }, WrongId | ErrorLine | InvalidUtf8) => {
                    source.is_parse() && message.starts_with("request 3: invalid HTTP")
                }
                // A half line, or nothing, then the end (or a reset, when the server closed
                // before reading our request): the answer never came whole.
                (FetchError::Http { id: 3, .. }, CloseMidLine | Hangup) => [
                    "invalid HTTP",
                    "connection closed before message completed",
                    "connection error",
                ]
                .iter()
                .any(|words| message.contains(words)),
                _ => false,
            };
            assert!(named, "{misbehaviour:?} gave {error:?}: {message}");
            // The loop, and hyper on it, still serve a server that speaks HTTP.
            assert_eq!(fetch(good.addr(), 4).await.unwrap(), "Request 4");
        }
    });
}

#[test]
fn a_server_that_never_answers_is_cut_off_by_our_timeout() {
    let silent = RogueServer::start(Misbehaviour::Silent).unwrap();
    let answer = block_on(timeout(300 * MS, fetch(silent.addr(), 0)));
    assert!(answer.is_err(), "{answer:?}");
}

/// Connects, sends half a request's headers, and waits for the server to hang up.
fn stall_in_headers(addr: SocketAddr) -> io::Result<Vec<u8>> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.write_all(b"POST / HTTP/1.1\r\nhost: x\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

#[test]
fn hyper_times_out_a_client_slow_with_its_headers_on_our_timers() {
    let header_timeout = 200 * MS;
    let server = ServerThread::start(Server {
        delay: Duration::ZERO,
        header_timeout,
    })
    .unwrap();
    let started = Instant::now();
    // Read to the end: the server hung up (a timeout in read_to_end would be an error).
    let answer = stall_in_headers(server.addr()).expect("the server hangs up");
    let took = started.elapsed();
    assert!(took >= header_timeout, "hung up after {took:?}: {answer:?}");
    // hyper counts the connection failed once it has hung up: a moment after.
    let counted = Instant::now();
    while server.stats().failed_connections() == 0 && counted.elapsed() < PATIENCE {
        std::thread::sleep(MS);
    }
    assert_eq!(server.stats().failed_connections(), 1);
    // Nothing else broke: the same server answers the next client.
    assert_eq!(block_on(fetch(server.addr(), 1)).unwrap(), "Request 1");
}

#[test]
fn a_blocking_http_request_in_a_task_makes_the_requests_take_turns() {
    let (requests, delay) = (3, 150 * MS);
    let server = ServerThread::start(Server::new(delay)).unwrap();
    let fetched = fetch_all(How::Blocking, server.addr(), requests, 50 * MS).unwrap();
    assert_eq!(fetched.report.verified() as u64, requests);
    // One answer at a time: each task held the loop until its answer was in.
    assert_eq!(server.stats().peak_waiting(), 1);
    assert!(
        fetched.report.total() >= requests as u32 * delay,
        "{fetched:?}"
    );
    assert!(fetched.stall.longest_gap >= delay, "{fetched:?}");
    // Each blocking task is named, for at least as long as it blocked (a loaded
    // machine may add warnings of its own).
    for task in 2..2 + requests {
        let warning = fetched
            .stall
            .warnings
            .iter()
            .find(|w| w.task.id == Some(task));
        let warning = warning.unwrap_or_else(|| panic!("task {task} not named: {fetched:?}"));
        assert!(warning.took >= delay - 10 * MS, "{warning:?}");
        assert!(warning.to_string().contains("examples/hyper/blocking.rs"));
    }
}

#[test]
fn hyper_on_the_loop_and_spawn_blocking_let_the_requests_overlap() {
    let (requests, delay) = (3, 150 * MS);
    let server = ServerThread::start(Server::new(delay)).unwrap();
    for how in [How::Hyper, How::SpawnBlocking] {
        let fetched = fetch_all(how, server.addr(), requests, 50 * MS).unwrap();
        assert_eq!(fetched.report.verified() as u64, requests);
        // More than one waited at once: they overlapped (all of them, unless a loaded
        // machine held back the last one until the first was answered).
        let peak = server.stats().take_peak_waiting();
        assert!(peak > 1, "{how:?}: at most {peak} at once: {fetched:?}");
        // No poll blocked for the length of a request (a loaded machine may still
        // preempt the loop for a while in an innocent one).
        let blocked = fetched.stall.warnings.iter().find(|w| w.took >= delay);
        assert!(blocked.is_none(), "{how:?}: {blocked:?}");
    }
}
