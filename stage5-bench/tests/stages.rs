//! The uniform layer over the stages: every stage's demo, through [`Stage::run`], on one
//! embedded server, verified, and concurrent.

use std::time::{Duration, Instant};

use shared::Config;
use shared::server::SlowServer;
use shared::testkit::refused_addr;
use stage5_bench::{Stage, run_verified};

#[test]
fn every_stage_answers_every_request_concurrently() {
    let server = SlowServer::start(Duration::from_millis(200)).unwrap();
    let config = Config::new(server.addr(), 20);
    for stage in Stage::ALL {
        let started = Instant::now();
        let report =
            run_verified(stage, &config).unwrap_or_else(|e| panic!("{}: {e}", stage.name()));
        assert_eq!(report.verified(), 20, "{}", stage.name());
        // One after another would take 4 s.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{}: {:?}",
            stage.name(),
            started.elapsed()
        );
    }
}

#[test]
fn a_stage_that_cannot_connect_is_an_error_not_a_report() {
    let config = Config::new(refused_addr(), 3);
    for stage in Stage::ALL {
        let error = run_verified(stage, &config).unwrap_err();
        assert!(
            error.to_string().contains("connection refused"),
            "{}: {error}",
            stage.name()
        );
    }
}
