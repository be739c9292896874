//! Aborting a task: `JoinHandle::abort` and `AbortHandle`. The task's future is dropped
//! at its next scheduling point, its sockets close (the peer sees the end of the stream),
//! awaiting its handle gives `JoinError::Cancelled`, and aborting a finished task does
//! nothing. On both drivers.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use stage4_async_await::net::{TcpListener, TcpStream};
use stage4_async_await::{AbortHandle, JoinError, block_on, sleep, spawn, timeout, yield_now};

#[cfg(target_os = "linux")]
mod common;

const MS: Duration = Duration::from_millis(1);

/// Sets its flag when dropped: proof that a task's future was dropped, not leaked.
struct SetOnDrop(Rc<Cell<bool>>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Awaits `handle` with a deadline: an abort that never takes effect fails the test
/// instead of hanging it.
async fn cancelled<T: std::fmt::Debug>(handle: stage4_async_await::JoinHandle<T>) -> JoinError {
    timeout(Duration::from_secs(10), handle)
        .await
        .expect("the aborted task ended")
        .expect_err("an aborted task has no result")
}

#[test]
fn an_aborted_task_is_dropped_its_socket_closes_and_its_handle_says_cancelled() {
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let dropped = Rc::new(Cell::new(false));
        let guard = SetOnDrop(Rc::clone(&dropped));
        let task = spawn(async move {
            let _guard = guard;
            let stream = TcpStream::connect(addr).await.unwrap();
            let mut buf = [0; 8];
            let _ = stream.read(&mut buf).await;
            unreachable!("nobody writes to it");
        });
        let (peer, _) = listener.accept().await.unwrap();
        sleep(10 * MS).await; // the task is waiting in its read now
        assert!(!task.is_finished());
        task.abort();
        let error = cancelled(task).await;
        assert!(error.is_cancelled(), "{error}");
        assert!(matches!(error, JoinError::Cancelled));
        assert!(dropped.get(), "the task's future was dropped");
        // Its socket closed with it: the peer reads the end of the stream.
        let mut buf = [0; 8];
        let read = timeout(Duration::from_secs(10), peer.read(&mut buf)).await;
        assert_eq!(read.expect("end of stream, not silence").unwrap(), 0);
    });
}

#[test]
fn aborting_a_finished_task_does_nothing() {
    block_on(async {
        let task = spawn(async { 42 });
        while !task.is_finished() {
            yield_now().await;
        }
        task.abort();
        task.abort();
        assert_eq!(task.await.unwrap(), 42);
    });
}

#[test]
fn a_task_aborted_before_its_first_poll_never_runs() {
    let ran = Rc::new(Cell::new(false));
    let flag = Rc::clone(&ran);
    block_on(async move {
        let task = spawn(async move { flag.set(true) });
        task.abort();
        assert!(cancelled(task).await.is_cancelled());
    });
    assert!(!ran.get(), "an aborted task ran");
}

#[test]
fn an_abort_handle_given_to_another_task_aborts_the_first() {
    block_on(async {
        let victim = spawn(sleep(Duration::from_secs(3600)));
        let handle: AbortHandle = victim.abort_handle();
        let aborter = spawn(async move {
            sleep(5 * MS).await;
            handle.abort();
            handle.is_finished()
        });
        let start = Instant::now();
        assert!(cancelled(victim).await.is_cancelled());
        assert!(start.elapsed() < Duration::from_secs(10));
        // Dropped at the abort's own turn: by the time the aborter ran on, the victim
        // was only queued, not yet dropped.
        assert!(!aborter.await.unwrap());
    });
}

#[test]
fn a_task_can_abort_itself_and_stops_at_its_next_await() {
    let reached = Rc::new(Cell::new(0));
    let count = Rc::clone(&reached);
    block_on(async move {
        let (send, receive) = futures::channel::oneshot::channel::<AbortHandle>();
        let task = spawn(async move {
            let me = receive.await.unwrap();
            count.set(1);
            me.abort();
            count.set(2); // still in the same poll: it goes on until it yields
            yield_now().await;
            count.set(3);
        });
        send.send(task.abort_handle()).unwrap();
        assert!(cancelled(task).await.is_cancelled());
    });
    assert_eq!(
        reached.get(),
        2,
        "the task stopped at its next await, not before"
    );
}

#[test]
fn other_tasks_go_on_after_an_abort() {
    block_on(async {
        let victims: Vec<_> = (0..100)
            .map(|_| spawn(sleep(Duration::from_secs(3600))))
            .collect();
        let survivors: Vec<_> = (0..100u64)
            .map(|i| {
                spawn(async move {
                    sleep(MS * (i % 7) as u32).await;
                    i
                })
            })
            .collect();
        for victim in &victims[..50] {
            victim.abort();
        }
        for (i, survivor) in survivors.into_iter().enumerate() {
            assert_eq!(survivor.await.unwrap(), i as u64);
        }
        for (i, victim) in victims.into_iter().enumerate() {
            if i < 50 {
                assert!(cancelled(victim).await.is_cancelled());
            } else {
                assert!(!victim.is_finished(), "task {i} was not aborted");
            }
        }
    });
}

/// The same on the io_uring driver, in the middle of a read the kernel holds.
#[cfg(target_os = "linux")]
#[test]
fn aborting_a_task_in_the_middle_of_an_io_uring_read_closes_its_socket() {
    use std::io::Read;

    use stage4_async_await::uring;
    if common::io_uring_refused().is_some() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0; 8];
        peer.read(&mut buf) // the end of the stream once the task is aborted
    });
    block_on(async move {
        let dropped = Rc::new(Cell::new(false));
        let guard = SetOnDrop(Rc::clone(&dropped));
        let task = spawn(async move {
            let _guard = guard;
            let stream = uring::TcpStream::connect(addr).await.unwrap();
            let (_read, _buf) = stream.read(Vec::with_capacity(64)).await;
            unreachable!("nobody writes to it");
        });
        sleep(20 * MS).await; // connected, and the read is in the kernel
        task.abort();
        assert!(cancelled(task).await.is_cancelled());
        assert!(dropped.get());
        // Let the ring submit the cancel and the close.
        sleep(20 * MS).await;
    });
    let read = peer.join().unwrap();
    assert_eq!(read.expect("end of stream, not a timeout"), 0);
}
