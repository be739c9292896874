//! Stage 1's `run` keeps the contract of every stage (`shared::testkit::contract`):
//! every response verified, requests overlapping on one thread, and a clear error for a
//! server that is not there, answers garbage or never answers.
//!
//! Run them: `cargo test -p stage1-callbacks`.

use std::time::Duration;

use shared::Config;
use shared::server::SlowServer;

shared::contract_tests!(stage1_callbacks::run);

#[test]
fn a_timeout_spares_the_requests_that_were_answered() {
    // 300 ms answers with a 5 s timeout: all verified, and run does not wait for the timeout.
    let server = SlowServer::start(Duration::from_millis(300)).expect("start the slow server");
    let mut config = Config::new(server.addr(), 3);
    config.timeout = Duration::from_secs(5);
    let report = stage1_callbacks::run(&config).expect("verified");
    assert_eq!(report.verified(), 3);
    assert!(
        report.total() < Duration::from_secs(3),
        "{:?}",
        report.total()
    );
}
