//! The callback event loop on its own: timers, callbacks that register callbacks,
//! re-registration, deregistration from inside a callback, and `stop`.
//!
//! Run them: `cargo test -p stage1-callbacks --test event_loop`.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::Interest;
use mio::net::{TcpListener, TcpStream};
use stage1_callbacks::event_loop::EventLoop;

#[test]
fn timers_fire_in_deadline_order_and_equal_deadlines_in_the_order_set() {
    let mut event_loop = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    for (name, ms) in [("c", 30), ("a", 10), ("b1", 20), ("b2", 20)] {
        let log = Rc::clone(&log);
        event_loop.call_later(Duration::from_millis(ms), move |_| {
            log.borrow_mut().push(name)
        });
    }
    let started = Instant::now();
    event_loop.run().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(30));
    // b1 and b2 were set for the same instant: they must not collide.
    assert_eq!(*log.borrow(), ["a", "b1", "b2", "c"]);
    assert_eq!(event_loop.pending(), 0);
}

#[test]
fn a_timer_can_set_a_timer_and_run_waits_for_it() {
    let mut event_loop = EventLoop::new().unwrap();
    let fired = Rc::new(RefCell::new(0));
    let outer = Rc::clone(&fired);
    event_loop.call_later(Duration::from_millis(5), move |event_loop| {
        *outer.borrow_mut() += 1;
        let inner = Rc::clone(&outer);
        event_loop.call_later(Duration::from_millis(5), move |_| *inner.borrow_mut() += 1);
    });
    event_loop.run().unwrap();
    assert_eq!(*fired.borrow(), 2);
}

/// A listener whose callback accepts one client and registers a callback for it; that
/// callback reads one line, answers it, and deregisters itself and the listener. `run`
/// must then return on its own, with nothing left pending.
#[test]
fn callbacks_register_and_deregister_callbacks_and_run_ends_when_none_is_left() {
    let mut event_loop = EventLoop::new().unwrap();
    let listener = Rc::new(RefCell::new(
        TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
    ));
    let addr = listener.borrow().local_addr().unwrap();
    let client = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(b"ping\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap(); // until the server closes
        answer
    });
    let accepted = Rc::clone(&listener);
    event_loop
        .register(
            &mut *listener.borrow_mut(),
            Interest::READABLE,
            move |event_loop, event| {
                let Ok((stream, _)) = accepted.borrow().accept() else {
                    return; // spurious: nobody there yet
                };
                let listener_token = event.token();
                let stream = Rc::new(RefCell::new(stream));
                let reader = Rc::clone(&stream);
                let accepted = Rc::clone(&accepted);
                let mut got = Vec::new();
                event_loop
                    .register(
                        &mut *stream.borrow_mut(),
                        Interest::READABLE,
                        move |event_loop, event| {
                            let mut sock = reader.borrow_mut();
                            let mut buf = [0; 64];
                            while let Ok(n) = sock.read(&mut buf) {
                                if n == 0 {
                                    break;
                                }
                                got.extend_from_slice(&buf[..n]);
                            }
                            if got.ends_with(b"\n") {
                                sock.write_all(b"pong\n").unwrap();
                                event_loop.deregister(&mut *sock, event.token()).unwrap();
                                event_loop
                                    .deregister(&mut *accepted.borrow_mut(), listener_token)
                                    .unwrap();
                            }
                        },
                    )
                    .unwrap();
            },
        )
        .unwrap();
    event_loop.run().unwrap();
    assert_eq!(event_loop.pending(), 0);
    drop(event_loop); // closes the connection: the client's read_to_string ends
    drop(listener);
    assert_eq!(client.join().unwrap(), "pong\n");
}

/// A callback that replaces itself: the first fires on WRITABLE and re-registers the
/// source for READABLE with a second callback, which must be the one called from then on.
#[test]
fn reregister_replaces_the_callback() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut event_loop = EventLoop::new().unwrap();
    let stream = Rc::new(RefCell::new(
        TcpStream::connect(server.local_addr().unwrap()).unwrap(),
    ));
    let (mut peer, _) = server.accept().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let (first_stream, first_log) = (Rc::clone(&stream), Rc::clone(&log));
    event_loop
        .register(
            &mut *stream.borrow_mut(),
            Interest::WRITABLE,
            move |event_loop, event| {
                first_log.borrow_mut().push("writable");
                let (second_stream, second_log) = (Rc::clone(&first_stream), Rc::clone(&first_log));
                let second = move |event_loop: &mut EventLoop, event: &mio::event::Event| {
                    second_log.borrow_mut().push("readable");
                    event_loop
                        .deregister(&mut *second_stream.borrow_mut(), event.token())
                        .unwrap();
                };
                event_loop
                    .reregister(
                        &mut *first_stream.borrow_mut(),
                        event.token(),
                        Interest::READABLE,
                        second,
                    )
                    .unwrap();
            },
        )
        .unwrap();
    peer.write_all(b"x").unwrap();
    event_loop.run().unwrap();
    assert_eq!(*log.borrow(), ["writable", "readable"]);
}

#[test]
fn stop_ends_run_with_sources_still_registered() {
    let mut event_loop = EventLoop::new().unwrap();
    let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    event_loop
        .register(&mut listener, Interest::READABLE, |_, _| {})
        .unwrap();
    event_loop.call_later(Duration::from_millis(10), |event_loop| event_loop.stop());
    event_loop.run().unwrap(); // without stop, this would wait for a client forever
    assert_eq!(
        event_loop.pending(),
        1,
        "the listener's callback stays registered"
    );
}

/// A delay too far for an `Instant` to hold is never: such a timer does not fire, does
/// not keep `run` waiting, and does not panic; a near one beside it fires as usual. A
/// deadline of `None` is no limit.
#[test]
fn a_far_timer_never_fires_and_a_near_one_beside_it_does() {
    let mut event_loop = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let far = [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_secs(i64::MAX as u64 + 1),
    ];
    for delay in far.into_iter().chain([Duration::from_millis(10)]) {
        let log = Rc::clone(&log);
        event_loop.call_later(delay, move |_| log.borrow_mut().push(delay));
    }
    assert_eq!(event_loop.pending(), 1, "only the near timer is pending");
    assert!(event_loop.run_until(None).unwrap(), "everything finished");
    assert_eq!(*log.borrow(), [Duration::from_millis(10)]);
}
