//! Stage 4's client against the embedded slow server and against servers that misbehave.

use std::time::{Duration, Instant};

use shared::testkit::{Misbehaviour, RogueServer, refused_addr};
use shared::{Config, Error};
use stage4_async_await::client::make_tcp_request;
use stage4_async_await::{block_on, run, timeout};

#[test]
fn a_silent_server_times_out() {
    let server = RogueServer::start(Misbehaviour::Silent).unwrap();
    // The runtime's own `timeout` around the article's coroutine...
    let started = Instant::now();
    let outcome = block_on(timeout(
        Duration::from_millis(200),
        make_tcp_request(server.addr(), 7),
    ));
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < Duration::from_secs(5));

    // ...and the config's timeout, one deadline for the whole run.
    let mut config = Config::new(server.addr(), 3);
    config.timeout = Duration::from_millis(200);
    let started = Instant::now();
    match run(&config) {
        Err(Error::Timeout { what }) => assert!(what.contains("within 0.2 s"), "{what}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_binary_prints_the_report() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stage4-async-await"))
        .args(["--requests", "5", "--delay-ms", "100"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("5/5 responses verified"), "{stdout}");
}

#[test]
fn the_binary_explains_an_fd_limit_instead_of_failing_half_way() {
    // A child process with at most 200 open files asks for 500 requests: both ends of
    // each connection count against it, so `shared::cli::run` refuses before starting.
    let output = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -n 200 && exec \"$0\" --requests 500 --delay-ms 10",
        ])
        .arg(env!("CARGO_BIN_EXE_stage4-async-await"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("RLIMIT_NOFILE"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_request_in_flight_is_a_state_machine_of_a_few_hundred_bytes() {
    // Stage 3 gave every request a 256 KiB stack; here the compiler sizes the future to
    // the variables alive across an .await: the stream, the decoder, the nested futures.
    // No read buffer: `read_into` keeps it on the stack of the poll that reads.
    let request = make_tcp_request(refused_addr(), 1);
    let size = std::mem::size_of_val(&request);
    assert!(size < 512, "{size} bytes");
    let by_hand = stage4_async_await::desugared::make_tcp_request(refused_addr(), 1);
    assert!(std::mem::size_of_val(&by_hand) < 128);
}

#[test]
fn the_trace_shows_each_step_of_a_task_in_a_form_a_program_can_read() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stage4-async-await"))
        .args(["--requests", "2", "--delay-ms", "100", "--trace"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("2/2 responses verified"), "{stdout}");
    // Every trace line: `[    t.ttt s] step     rest`, with a step from a closed set.
    let steps = [
        "spawn", "poll", "waker", "pending", "ready", "reactor", "event", "wake",
    ];
    let trace: Vec<(f64, &str, &str)> = stdout
        .lines()
        .filter_map(|line| {
            let (time, rest) = line.strip_prefix('[')?.split_once(" s] ")?;
            let (step, what) = rest.split_once(' ')?;
            if step == "Request" {
                return None; // a response, as the report prints it as it arrives
            }
            assert!(steps.contains(&step), "unknown step in {line:?}");
            Some((time.trim().parse().unwrap(), step, what.trim_start()))
        })
        .collect();
    assert!(trace.windows(2).all(|w| w[0].0 <= w[1].0), "{stdout}");
    let find = |from: usize, step: &str, what: &dyn Fn(&str) -> bool| {
        (from..trace.len())
            .find(|&i| trace[i].1 == step && what(trace[i].2))
            .unwrap_or_else(|| panic!("no `{step}` after line {from}:\n{stdout}"))
    };
    // Each task: spawned, polled, leaves its waker on its socket, Pending; the reactor
    // reports that socket readable and wakes it; it is polled again and is Ready.
    for task in ["task 1", "task 2"] {
        let spawned = find(0, "spawn", &|what| what == task);
        let polled = find(spawned, "poll", &|what| what == task);
        let waker = find(polled, "waker", &|what| {
            what.starts_with(&format!("{task} on socket"))
        });
        let socket = trace[waker].2.split(' ').nth(4).unwrap().to_string();
        let pending = find(waker, "pending", &|what| what == task);
        let event = find(pending, "event", &|what| {
            what.starts_with(&format!("socket {socket} readable: wakes "))
                && !what.contains("wakes 0")
        });
        let woken = find(event, "wake", &|what| what == task);
        let polled_again = find(woken, "poll", &|what| what == task);
        find(polled_again, "ready", &|what| what == task);
    }
}
