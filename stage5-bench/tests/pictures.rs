//! The pictures' structure: timelines drawn from real runs, and the sequence diagrams'
//! parsers on traces recorded from stages 3 and 4.

use std::time::Duration;

use shared::Config;
use shared::server::SlowServer;
use stage5_bench::pictures::{Dance, Threads, Timeline};
use stage5_bench::{Stage, run_verified};

const DELAY: Duration = Duration::from_millis(300);

fn ids(timeline: &Timeline) -> Vec<u64> {
    timeline.bars.iter().map(|b| b.id).collect()
}

#[test]
fn the_sequential_staircase_has_ten_bars_in_order_that_never_overlap() {
    let server = SlowServer::start(Duration::from_millis(50)).unwrap();
    let report = stage0_blocking::run_sequential(&Config::new(server.addr(), 10)).unwrap();
    let timeline = Timeline::from_report("sequential", Threads::OneSequential, &report).unwrap();
    assert_eq!(ids(&timeline), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    for (before, bar) in timeline.bars.iter().zip(&timeline.bars[1..]) {
        assert!(bar.start >= before.end, "{before:?} then {bar:?}");
        // A bar is one request's wait: at least the server's delay long.
        assert!(bar.end - bar.start >= 0.045, "{bar:?}");
    }
    assert!(timeline.is_staircase());
    assert!(!timeline.all_overlap());
    let structure = timeline.structure();
    assert!(structure.contains("threads: 1\nbars: 10\n"), "{structure}");
    assert!(structure.contains("shape: a staircase"), "{structure}");
    let svg = timeline.svg();
    assert_eq!(svg.matches(r#"class="bar""#).count(), 10);
}

#[test]
fn the_concurrent_timelines_overlap_and_finish_long_before_ten_delays() {
    let server = SlowServer::start(DELAY).unwrap();
    let config = Config::new(server.addr(), 10);
    for (stage, threads, lanes) in [
        (Stage::Blocking, Threads::PerRequest, 10),
        (Stage::AsyncAwait, Threads::OneInterleaved, 1),
    ] {
        let report = run_verified(stage, &config).unwrap();
        let timeline = Timeline::from_report(stage.name(), threads, &report).unwrap();
        assert_eq!(ids(&timeline), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
        // The derived start (the run's start) is honest only if the requests really
        // waited at once: one after the other, the last answer would take ten delays.
        let last = timeline.bars.iter().map(|b| b.end).fold(0.0, f64::max);
        assert!(last < 10.0 * DELAY.as_secs_f64(), "{stage:?}: {last} s");
        assert!(timeline.all_overlap(), "{stage:?}");
        assert!(!timeline.is_staircase(), "{stage:?}");
        assert_eq!(timeline.thread_count(), lanes);
        let structure = timeline.structure();
        assert!(
            structure.contains(&format!("threads: {lanes}\n")),
            "{structure}"
        );
        assert!(
            structure.contains("every bar overlaps every other"),
            "{structure}"
        );
    }
}

#[test]
fn a_report_without_an_answer_cannot_be_drawn() {
    let mut report = shared::Report::start(&Config::new("127.0.0.1:1".parse().unwrap(), 2));
    report.record(1, Ok("Request 1".into()));
    let error = Timeline::from_report("half", Threads::PerRequest, &report).unwrap_err();
    assert!(
        error.to_string().contains("no answer to request 0"),
        "{error}"
    );
}

/// Each task's messages, as `from -> to: label`.
fn steps(dance: &Dance, lifeline: &str) -> Vec<String> {
    dance
        .messages_of(lifeline)
        .into_iter()
        .map(|m| format!("{} -> {}: {}", m.from, m.to, m.label))
        .collect()
}

#[test]
fn stage4s_trace_becomes_each_tasks_dance() {
    let dance = Dance::parse_stage4("stage 4", STAGE4_TRACE).unwrap();
    assert_eq!(
        dance.lifelines,
        ["executor", "main", "task 1", "task 2", "reactor"]
    );
    for (task, socket, answer) in [("task 1", 0, 1), ("task 2", 1, 0)] {
        assert_eq!(
            steps(&dance, task),
            [
                format!("executor -> {task}: poll"),
                format!("{task} -> reactor: waker on socket {socket} readable"),
                format!("{task} -> executor: Pending"),
                format!("executor -> {task}: poll"),
                format!("{task} -> {task}: got `Request {answer}`"),
                format!("{task} -> executor: Ready"),
            ]
        );
    }
    // The reactor's wait, and the event that wakes each task before its second poll.
    let labels: Vec<&str> = dance.messages.iter().map(|m| m.label.as_str()).collect();
    assert!(labels.iter().any(|l| l.starts_with("waits ")), "{labels:?}");
    for task in ["task 1", "task 2"] {
        let woken = labels
            .iter()
            .position(|l| *l == format!("wake {task}"))
            .unwrap();
        let polls: Vec<usize> = (0..dance.messages.len())
            .filter(|&i| dance.messages[i].to == task && dance.messages[i].label == "poll")
            .collect();
        assert!(
            polls[0] < woken && woken < polls[1],
            "{task}: {polls:?} {woken}"
        );
        assert_eq!(dance.messages[woken].from, "reactor");
    }
    // Every line of the trace with a step became a message; the header and report did not.
    let stamped = STAGE4_TRACE.lines().filter(|l| l.starts_with('[')).count();
    assert_eq!(dance.messages.len(), stamped);
    let svg = dance.svg();
    let arrows = dance.messages.iter().filter(|m| m.from != m.to).count();
    assert_eq!(svg.matches(r#"class="arrow""#).count(), arrows);
    assert!(
        !svg.contains("<script") && !svg.contains("href"),
        "self-contained"
    );
}

#[test]
fn stage3s_trace_becomes_each_tasks_dance() {
    let dance = Dance::parse_stage3("stage 3", STAGE3_TRACE).unwrap();
    assert_eq!(
        dance.lifelines,
        ["event loop", "request 1", "request 0", "gather", "OS: poll"]
    );
    let structure = dance.structure();
    for task in ["request 1", "request 0"] {
        let steps = steps(&dance, task);
        assert_eq!(steps.len(), 8, "{steps:?}");
        assert!(
            steps[0].ends_with("created: first step scheduled"),
            "{steps:?}"
        );
        assert!(steps[2].contains("yield future") && steps[2].ends_with("(writable)"));
        assert!(steps[4].contains("yield future") && steps[4].ends_with("(readable)"));
        assert!(steps[6].contains("got `Request"), "{steps:?}");
        assert!(steps[7].ends_with("complete"), "{steps:?}");
        assert!(structure.contains(&format!("{task}:\n  {task} -> event loop: created")));
    }
    // Numbers of futures are left out of what CI compares.
    assert!(
        structure.contains("yield future N (readable)"),
        "{structure}"
    );
    assert!(
        dance
            .messages
            .iter()
            .any(|m| m.to == "OS: poll" && m.label.starts_with("waits"))
    );
}

#[test]
fn a_trace_line_the_parser_does_not_know_is_an_error_and_unstamped_lines_are_skipped() {
    let trace = "2 requests to the embedded slow server\n[   0.000 s] poll     main\n";
    assert_eq!(Dance::parse_stage4("t", trace).unwrap().messages.len(), 1);
    let error = Dance::parse_stage4("t", "[   0.000 s] teleport task 1\n").unwrap_err();
    assert!(error.to_string().contains("teleport task 1"), "{error}");
    let error = Dance::parse_stage3("t", "[   0.000 s] task `x` exploded\n").unwrap_err();
    assert!(error.to_string().contains("exploded"), "{error}");
}

#[test]
fn the_books_dances_are_drawn_from_the_traces_kept_beside_them() {
    let figures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/figures");
    let read = |name: &str| std::fs::read_to_string(figures.join(name)).unwrap();
    for stage in [3, 4] {
        let trace = read(&format!("dance-stage{stage}.trace.txt"));
        let title = format!("stage {stage}: the four players, 2 requests");
        let dance = match stage {
            3 => Dance::parse_stage3(&title, &trace),
            _ => Dance::parse_stage4(&title, &trace),
        }
        .unwrap();
        // Regenerate with `.ci/pictures` rather than editing a picture by hand.
        assert_eq!(dance.svg(), read(&format!("dance-stage{stage}.svg")));
        assert_eq!(
            dance.structure(),
            read(&format!("dance-stage{stage}.structure.txt"))
        );
    }
}

/// `cargo run -p stage4-async-await -- --requests 2 --delay-ms 200 --trace`, recorded.
const STAGE4_TRACE: &str = "\
[   0.000 s] poll     main
[   0.000 s] spawn    task 1
[   0.000 s] spawn    task 2
[   0.000 s] waker    main on timer 0 due at 60.000 s
[   0.000 s] pending  main
[   0.000 s] poll     task 1
[   0.000 s] waker    task 1 on socket 0 readable
[   0.000 s] pending  task 1
[   0.000 s] poll     task 2
[   0.000 s] waker    task 2 on socket 1 readable
[   0.000 s] pending  task 2
[   0.000 s] reactor  waits 59999 ms at most (2 socket(s), 1 timer(s))
[   0.000 s] event    socket 0 writable: wakes 0 waiter(s)
[   0.000 s] event    socket 1 writable: wakes 0 waiter(s)
[   0.000 s] reactor  waits 59999 ms at most (2 socket(s), 1 timer(s))
[   0.201 s] event    socket 0 readable: wakes 1 waiter(s)
[   0.201 s] event    socket 0 writable: wakes 0 waiter(s)
[   0.201 s] wake     task 1
[   0.201 s] poll     task 1
[   0.201 s] Request 1
[   0.201 s] wake     main
[   0.201 s] ready    task 1
[   0.201 s] reactor  checks without waiting: tasks are ready (1 socket(s), 1 timer(s))
[   0.201 s] event    socket 1 readable: wakes 1 waiter(s)
[   0.201 s] event    socket 1 writable: wakes 0 waiter(s)
[   0.201 s] wake     task 2
[   0.201 s] poll     main
[   0.201 s] waker    main on timer 0 due at 60.000 s
[   0.201 s] pending  main
[   0.201 s] poll     task 2
[   0.201 s] Request 0
[   0.201 s] wake     main
[   0.201 s] ready    task 2
[   0.201 s] poll     main
[   0.201 s] ready    main
2/2 responses verified in 0.201 s
";

/// `cargo run -p stage3-generators -- --requests 2 --delay-ms 200 --trace`, recorded.
const STAGE3_TRACE: &str = "\
[   0.000 s] task `request 1` created (its result: future 0 (task result)), first step scheduled
[   0.000 s] task `request 0` created (its result: future 1 (task result)), first step scheduled
[   0.000 s] task `gather` created (its result: future 2 (task result)), first step scheduled
[   0.000 s] task `request 1` resumed
[   0.000 s] task `request 1` yielded future 3 (writable); registers its step as a done-callback
[   0.000 s] task `request 0` resumed
[   0.000 s] task `request 0` yielded future 5 (writable); registers its step as a done-callback
[   0.000 s] task `gather` resumed
[   0.000 s] task `gather` yielded future 0 (task result); registers its step as a done-callback
[   0.000 s] loop waits in poll, 59999 ms at most (2 socket(s) and 0 timer(s) pending)
[   0.000 s] socket of future 3 (writable) is ready
[   0.000 s] future 3 (writable) set_result: 1 callback(s) scheduled
[   0.000 s] socket of future 5 (writable) is ready
[   0.000 s] future 5 (writable) set_result: 1 callback(s) scheduled
[   0.000 s] task `request 1` resumed
[   0.000 s] task `request 1` yielded future 7 (readable); registers its step as a done-callback
[   0.000 s] task `request 0` resumed
[   0.000 s] task `request 0` yielded future 9 (readable); registers its step as a done-callback
[   0.000 s] loop waits in poll, 59999 ms at most (2 socket(s) and 0 timer(s) pending)
[   0.201 s] socket of future 7 (readable) is ready
[   0.201 s] future 7 (readable) set_result: 1 callback(s) scheduled
[   0.201 s] task `request 1` resumed
[   0.201 s] Request 1
[   0.201 s] task `request 1` complete
[   0.201 s] future 0 (task result) set_result: 1 callback(s) scheduled
[   0.201 s] loop polls without blocking: callbacks are ready (1 socket(s) and 0 timer(s) pending)
[   0.201 s] task `gather` resumed
[   0.201 s] task `gather` yielded future 1 (task result); registers its step as a done-callback
[   0.201 s] loop waits in poll, 59799 ms at most (1 socket(s) and 0 timer(s) pending)
[   0.202 s] socket of future 9 (readable) is ready
[   0.202 s] future 9 (readable) set_result: 1 callback(s) scheduled
[   0.202 s] task `request 0` resumed
[   0.202 s] Request 0
[   0.202 s] task `request 0` complete
[   0.202 s] future 1 (task result) set_result: 1 callback(s) scheduled
[   0.202 s] loop polls without blocking: callbacks are ready (0 socket(s) and 0 timer(s) pending)
[   0.202 s] task `gather` resumed
[   0.202 s] task `gather` complete
[   0.202 s] future 2 (task result) set_result: 0 callback(s) scheduled
2/2 responses verified in 0.202 s
";
