//! The hand-written `MakeTcpRequest` keeps every promise of the `async fn` it spells out:
//! the contract of every stage, run through stage 4's runtime, and the same outcome as
//! the compiler's future against every misbehaving server.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use shared::server::SlowServer;
use shared::testkit::{Misbehaviour, RogueServer, refused_addr};
use shared::{Config, Error, Report, request_ids};
use stage4_async_await::timeout;
use stage4_async_await::{EventLoop, JoinHandle, block_on, client, desugared, join_all, spawn};

/// `stage4_async_await::run`, with the hand-written future in each task.
fn run_desugared(config: &Config) -> Result<Report, Error> {
    let event_loop = EventLoop::new().map_err(|e| Error::io("creating the event loop", e))?;
    let report = Rc::new(RefCell::new(Report::start(config)));
    event_loop.block_on(async {
        let tasks: Vec<JoinHandle<()>> = request_ids(config.requests)
            .map(|id| {
                let (addr, report) = (config.addr, Rc::clone(&report));
                spawn(async move {
                    let response = desugared::make_tcp_request(addr, id).await;
                    report.borrow_mut().record(id, response);
                })
            })
            .collect();
        match timeout(config.timeout, join_all(tasks)).await {
            Ok(joined) => joined.into_iter().for_each(|task| task.unwrap()),
            Err(_elapsed) => report.borrow_mut().time_out_unanswered(config.timeout),
        }
    });
    let report = Rc::into_inner(report).expect("every task was cancelled or finished");
    report.into_inner().finish()
}

shared::contract_tests!(run_desugared);

#[test]
fn the_same_report_as_the_async_fn() {
    let server = SlowServer::start(Duration::from_millis(100)).unwrap();
    let config = Config::new(server.addr(), 10);
    let lines = |report: Report| {
        let mut lines: Vec<(u64, String)> = report
            .responses()
            .iter()
            .map(|response| (response.id, response.line.clone()))
            .collect();
        lines.sort();
        lines
    };
    let by_hand = lines(run_desugared(&config).unwrap());
    let by_compiler = lines(stage4_async_await::run(&config).unwrap());
    assert_eq!(by_hand.len(), 10);
    assert_eq!(by_hand, by_compiler);
}

#[test]
fn the_same_outcome_as_the_async_fn_against_every_misbehaving_server() {
    for misbehaviour in [
        Misbehaviour::WrongId,
        Misbehaviour::ErrorLine,
        Misbehaviour::InvalidUtf8,
        Misbehaviour::CloseMidLine,
        Misbehaviour::Hangup,
    ] {
        let server = RogueServer::start(misbehaviour).unwrap();
        let (by_hand, by_compiler) = block_on(async {
            let by_hand = desugared::make_tcp_request(server.addr(), 4).await;
            let by_compiler = client::make_tcp_request(server.addr(), 4).await;
            (by_hand, by_compiler)
        });
        let outcome = |result: Result<String, Error>| match result {
            Ok(line) => format!("Ok({line})"),
            // A server that hangs up on unread bytes may reset the connection (Linux
            // sends RST then) or just close it, whichever future asked: both are errors.
            Err(_) if misbehaviour == Misbehaviour::Hangup => "Err(hung up)".into(),
            Err(error) => format!("Err({error})"),
        };
        assert_eq!(outcome(by_hand), outcome(by_compiler), "{misbehaviour:?}");
    }
    let refused = refused_addr();
    let (by_hand, by_compiler) = block_on(async {
        let by_hand = desugared::make_tcp_request(refused, 1).await;
        let by_compiler = client::make_tcp_request(refused, 1).await;
        (by_hand, by_compiler)
    });
    assert!(matches!(by_hand, Err(Error::Connect { .. })), "{by_hand:?}");
    assert_eq!(
        by_hand.unwrap_err().to_string(),
        by_compiler.unwrap_err().to_string()
    );
}

#[test]
fn the_hand_written_future_is_no_bigger_than_the_compilers() {
    // Neither holds a read buffer; the compiler's also holds the future of the
    // `.await` it is at (`connect`'s, `write_all`'s, `read_into`'s).
    let by_hand = std::mem::size_of_val(&desugared::make_tcp_request(refused_addr(), 1));
    let by_compiler = std::mem::size_of_val(&client::make_tcp_request(refused_addr(), 1));
    assert!(by_hand < 128, "{by_hand} bytes");
    assert!(by_hand <= by_compiler, "{by_hand} > {by_compiler} bytes");
}
