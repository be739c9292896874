//! The anti-pattern examples' functions, with their effect asserted (generous bounds).

use std::time::Duration;

use shared::server::SlowServer;
use stage4_async_await::SlowPoll;
use stage4_async_await::anti_patterns::{
    Stall, Wait, blocking_call, busy_polling, flood, nested_block_on, sequential_awaits,
};
use stage4_async_await::context::DEFAULT_BUDGET;

const MS: Duration = Duration::from_millis(1);

#[test]
fn a_blocking_call_stalls_the_heartbeat_and_is_named() {
    let stall = blocking_call(Wait::ThreadSleep, 150 * MS, 50 * MS).unwrap();
    assert!(stall.longest_gap >= 150 * MS, "{stall:?}");
    // At least one warning names the blocking task (a loaded machine may add others).
    let warning = blocker_warning(&stall).to_string();
    assert!(warning.contains("task 2, spawned at"), "{warning}");
    assert!(warning.contains("src/anti_patterns.rs"), "{warning}");
}

/// The warning about task 2, the one that waits, for at least the 150 ms it blocked.
fn blocker_warning(stall: &Stall) -> &SlowPoll {
    let warning = stall.warnings.iter().find(|slow| slow.task.id == Some(2));
    let warning = warning.unwrap_or_else(|| panic!("no warning names task 2: {stall:?}"));
    assert!(warning.took >= 140 * MS, "{warning:?}");
    warning
}

/// Whether a poll blocked the loop for as long as the wait: a task that waits the right
/// way never does, however loaded the machine (a 50 ms preemption may still be warned).
fn no_poll_blocked_for_the_wait(stall: &Stall) -> bool {
    stall.warnings.iter().all(|slow| slow.took < 150 * MS)
}

#[test]
fn a_blocking_socket_stalls_the_heartbeat_too() {
    let server = SlowServer::start(150 * MS).unwrap();
    let stall = blocking_call(Wait::BlockingSocket(server.addr()), 150 * MS, 50 * MS).unwrap();
    assert!(stall.longest_gap >= 140 * MS, "{stall:?}");
    blocker_warning(&stall);
}

#[test]
fn an_async_sleep_stalls_nothing() {
    let stall = blocking_call(Wait::AsyncSleep, 150 * MS, 50 * MS).unwrap();
    assert!(no_poll_blocked_for_the_wait(&stall), "{stall:?}");
    // The heartbeat period is 20 ms; a stalled one would show 150 ms.
    assert!(stall.longest_gap < 100 * MS, "{stall:?}");
}

#[test]
fn a_blocking_call_moved_to_spawn_blocking_stalls_nothing() {
    let stall = blocking_call(Wait::SpawnBlocking, 150 * MS, 50 * MS).unwrap();
    assert!(no_poll_blocked_for_the_wait(&stall), "{stall:?}");
    assert!(stall.longest_gap < 100 * MS, "{stall:?}");
}

#[test]
fn a_nested_block_on_is_refused_with_advice() {
    let message = nested_block_on();
    assert!(
        message.contains("from inside a running event loop"),
        "{message}"
    );
    assert!(message.contains("`.await` the future instead"), "{message}");
}

#[test]
fn sequential_awaits_add_up_and_join_all_does_not() {
    let delay = 100 * MS;
    let server = SlowServer::start(delay).unwrap();
    let timings = sequential_awaits(server.addr(), 5).unwrap();
    assert!(timings.sequential >= 5 * delay, "{timings:?}");
    assert!(timings.concurrent >= delay, "{timings:?}");
    assert!(timings.concurrent < 3 * delay, "{timings:?}");
}

#[test]
fn busy_polling_burns_cpu_and_the_event_loop_does_not() {
    let times = busy_polling(200 * MS);
    // Generous: on a loaded machine the spinning thread gets far less than a full core
    // (a quarter of one at a load of 8 on 2 cores), but it spins whenever it runs.
    assert!(times.busy_polling >= 10 * MS, "{times:?}");
    assert!(times.busy_polls > 1_000, "{times:?}");
    assert!(times.event_loop < 20 * MS, "{times:?}");
    assert!(times.busy_polling > 5 * times.event_loop, "{times:?}");
}

#[test]
fn a_flood_is_accepted_in_full_with_and_without_a_budget() {
    // Every connection accepted, and the heartbeat ran throughout: its gaps are
    // measured (how long they are is the example's figure, on a quiet machine).
    for budget in [None, Some(DEFAULT_BUDGET)] {
        let flood = flood(2_000, budget).unwrap();
        assert_eq!(flood.accepted, 2_000, "budget {budget:?}");
        assert!(flood.stall.longest_gap >= flood.stall.period, "{flood:?}");
    }
}
