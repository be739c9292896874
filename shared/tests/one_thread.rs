//! `shared::testkit::contract::spawns_no_thread` itself: a `run` that starts a thread for
//! a moment must be caught, however short the thread's life.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use shared::testkit::contract::spawns_no_thread;
use shared::{Config, Error, Report, request_ids};

/// A one-thread `run`: every request pipelined on one connection, answers read in order.
fn pipelined(config: &Config) -> Result<Report, Error> {
    let mut report = Report::start(config);
    let mut stream = TcpStream::connect(config.addr).map_err(|source| Error::Connect {
        addr: config.addr,
        source,
    })?;
    let ids: Vec<u64> = request_ids(config.requests).collect();
    let lines: String = ids
        .iter()
        .map(|&id| shared::protocol::request(id))
        .collect();
    stream
        .write_all(lines.as_bytes())
        .map_err(|e| Error::io("sending", e))?;
    let mut reader = BufReader::new(stream);
    for id in ids {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| Error::io("reading", e))?;
        report.record(id, Ok(line.trim_end().to_string()));
    }
    report.finish()
}

#[test]
fn a_run_on_one_thread_passes() {
    spawns_no_thread(pipelined);
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[test]
#[should_panic(expected = "`run` started a thread")]
fn a_run_that_starts_a_short_lived_thread_is_caught() {
    spawns_no_thread(|config| {
        std::thread::spawn(|| ())
            .join()
            .expect("the short-lived thread");
        pipelined(config)
    });
}
