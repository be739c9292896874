//! The io_uring driver's refusal path: where io_uring is unusable, `--driver uring` fails
//! with one clear error before any request, and nothing else breaks.
//!
//! The error is simulated (`uring::simulate_setup_error`), as if `io_uring_setup` had
//! returned it: this machine has io_uring.
//!
//! Run them: `cargo test -p stage4-async-await --test uring` (Linux only).

#![cfg(target_os = "linux")]

use std::time::Duration;

use shared::Config;
use shared::server::SlowServer;
use stage4_async_await::{Driver, Options, run_with, uring};

mod common;

const URING: Options = Options {
    trace: false,
    driver: Driver::Uring,
};

fn refusal(errno: i32) -> Option<String> {
    common::io_uring_refused().is_none().then_some(())?;
    let server = SlowServer::start(Duration::from_millis(50)).unwrap();
    let config = Config::new(server.addr(), 3);
    uring::simulate_setup_error(Some(errno));
    let refused = run_with(&config, &URING);
    uring::simulate_setup_error(None);
    let error = refused
        .expect_err("a refused io_uring must fail the run")
        .to_string();
    // Nothing broken: the same thread runs both drivers right after.
    let report = run_with(&config, &URING).expect("io_uring works once not refused");
    assert_eq!(report.verified(), 3);
    let report = run_with(&config, &Options::default()).expect("mio is unaffected");
    assert_eq!(report.verified(), 3);
    Some(error)
}

#[test]
fn a_kernel_without_io_uring_is_a_clear_error() {
    let Some(error) = refusal(libc::ENOSYS) else {
        return;
    };
    assert!(error.contains("--driver uring"), "{error}");
    assert!(error.contains("this kernel has no io_uring"), "{error}");
    assert!(error.contains("Use --driver mio"), "{error}");
}

#[test]
fn io_uring_disabled_is_a_clear_error() {
    let Some(error) = refusal(libc::EPERM) else {
        return;
    };
    assert!(error.contains("kernel.io_uring_disabled"), "{error}");
    assert!(error.contains("seccomp"), "{error}");
    assert!(error.contains("Use --driver mio"), "{error}");
}
