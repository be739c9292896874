//! The cooperative budget: a task whose operations are always ready (an accept loop under
//! a flood, a read of a full socket, timers already due) yields after at most
//! `DEFAULT_BUDGET` of them, so the other tasks get their turn; without a budget it holds
//! the loop until it runs out of work.

use std::cell::Cell;
use std::future::Future;
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use stage4_async_await::context::DEFAULT_BUDGET;
use stage4_async_await::net::{TcpListener, TcpStream};
use stage4_async_await::{EventLoop, sleep_until, spawn, yield_now};

/// Runs `greedy` (which counts its operations in the counter it is given) beside a task
/// that looks at the counter at its first chance, and returns what it saw: how far the
/// greedy task got before it let the other run.
fn seen_by_the_other_task<F, Fut>(budget: Option<u32>, greedy: F) -> u64
where
    F: FnOnce(Rc<Cell<u64>>) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let event_loop = EventLoop::new().unwrap().budget(budget);
    event_loop.block_on(async move {
        let done = Rc::new(Cell::new(0));
        let greedy = spawn(greedy(Rc::clone(&done)));
        let other = spawn(async move {
            yield_now().await; // as the greedy task does once, before its burst
            done.get()
        });
        let seen = other.await.unwrap();
        greedy.await.unwrap();
        seen
    })
}

const OPERATIONS: u64 = 1000;

#[test]
fn an_accept_loop_with_connections_always_waiting_yields_after_its_budget() {
    shared::limits::check_connections(2 * 300).expect("enough descriptors");
    let accept_loop = |count: Rc<Cell<u64>>| async move {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // 300 connections wait in the backlog before the first accept: every accept
        // below completes at once, as under a flood.
        let clients: Vec<_> = (0..300)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        yield_now().await; // the other task's first chance comes after this
        while count.get() < 300 {
            let (_stream, _) = listener.accept().await.unwrap();
            count.set(count.get() + 1);
        }
        drop(clients);
    };
    let with_budget = seen_by_the_other_task(Some(DEFAULT_BUDGET), accept_loop);
    assert!(
        with_budget <= u64::from(DEFAULT_BUDGET),
        "the accept loop held the loop for {with_budget} accepts"
    );
    // Without a budget, the accept loop runs until the backlog is empty.
    assert_eq!(seen_by_the_other_task(None, accept_loop), 300);
}

#[test]
fn reading_a_socket_that_always_has_data_yields_after_the_budget() {
    let reader = |count: Rc<Cell<u64>>| async move {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut writer = std::net::TcpStream::connect(addr).unwrap();
        // Far more bytes than the reads below take: every read completes at once.
        writer.write_all(&[7; OPERATIONS as usize]).unwrap();
        let (stream, _): (TcpStream, _) = listener.accept().await.unwrap();
        yield_now().await;
        let mut byte = [0; 1];
        while count.get() < OPERATIONS {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
            count.set(count.get() + 1);
        }
    };
    assert!(seen_by_the_other_task(Some(DEFAULT_BUDGET), reader) <= u64::from(DEFAULT_BUDGET));
    assert_eq!(seen_by_the_other_task(None, reader), OPERATIONS);
}

#[test]
fn timers_already_due_yield_after_the_budget() {
    let sleeper = |count: Rc<Cell<u64>>| async move {
        let past = Instant::now() - Duration::from_millis(1);
        yield_now().await;
        while count.get() < OPERATIONS {
            sleep_until(past).await; // due: ready at once
            count.set(count.get() + 1);
        }
    };
    assert!(seen_by_the_other_task(Some(DEFAULT_BUDGET), sleeper) <= u64::from(DEFAULT_BUDGET));
    assert_eq!(seen_by_the_other_task(None, sleeper), OPERATIONS);
}

#[test]
fn a_small_budget_still_lets_every_operation_complete() {
    // A budget of one: every second operation yields first, and still all complete.
    let accepted = EventLoop::new().unwrap().budget(Some(1)).block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> = (0..50)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let mut accepted = 0;
        for _ in 0..50 {
            listener.accept().await.unwrap();
            accepted += 1;
        }
        drop(clients);
        accepted
    });
    assert_eq!(accepted, 50);
}
