//! Stage 2's loop on its own: it owns its handlers, dispatches by token, and forgets a
//! handler that deregistered itself.
//!
//! Run them: `cargo test -p stage2-state-machine --test event_loop`.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::Duration;

use mio::event::{Event, Source};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};
use stage2_state_machine::event_loop::{EventLoop, Handler};

/// A listener that accepts one client, hands it to an `Echo`, and deregisters itself.
struct Acceptor {
    listener: TcpListener,
    log: Rc<RefCell<Vec<String>>>,
}

impl Handler for Acceptor {
    fn source(&mut self) -> &mut dyn Source {
        &mut self.listener
    }

    fn on_event(&mut self, event_loop: &mut EventLoop, event: &Event) {
        let Ok((stream, _)) = self.listener.accept() else {
            return; // spurious
        };
        self.log
            .borrow_mut()
            .push(format!("accepted on {:?}", event.token()));
        let echo = Echo {
            stream,
            got: Vec::new(),
            log: Rc::clone(&self.log),
        };
        let token = event_loop.register(echo, Interest::READABLE).unwrap();
        assert_ne!(token, event.token(), "a new handler gets a new token");
        event_loop
            .deregister(&mut self.listener, event.token())
            .unwrap();
    }
}

/// Reads one line, writes it back, and deregisters itself.
struct Echo {
    stream: TcpStream,
    got: Vec<u8>,
    log: Rc<RefCell<Vec<String>>>,
}

impl Handler for Echo {
    fn source(&mut self) -> &mut dyn Source {
        &mut self.stream
    }

    fn on_event(&mut self, event_loop: &mut EventLoop, event: &Event) {
        let mut buf = [0; 64];
        while let Ok(n) = self.stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.got.extend_from_slice(&buf[..n]);
        }
        if self.got.ends_with(b"\n") {
            self.stream.write_all(&self.got).unwrap();
            self.log
                .borrow_mut()
                .push(format!("echoed on {:?}", event.token()));
            event_loop
                .deregister(&mut self.stream, event.token())
                .unwrap();
        }
    }
}

#[test]
fn handlers_register_handlers_and_run_ends_when_all_have_deregistered() {
    let mut event_loop = EventLoop::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    event_loop
        .register(
            Acceptor {
                listener,
                log: Rc::clone(&log),
            },
            Interest::READABLE,
        )
        .unwrap();
    let client = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(b"ping\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap(); // until the server closes
        answer
    });
    event_loop.run().unwrap();
    assert_eq!(event_loop.pending(), 0);
    // Both handlers were dropped by the loop when they deregistered: the socket is
    // closed, so the client's read_to_string has ended.
    assert_eq!(client.join().unwrap(), "ping\n");
    assert_eq!(
        *log.borrow(),
        ["accepted on Token(0)", "echoed on Token(1)"]
    );
}

/// Including a delay too far for an `Instant` to hold: never, so it neither fires nor
/// keeps the loop waiting; and a deadline of `None`: no limit.
#[test]
fn timers_work_as_in_stage_1() {
    let mut event_loop = EventLoop::new().unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    for (name, delay) in [
        ("b", Duration::from_millis(20)),
        ("never", Duration::MAX),
        ("a", Duration::from_millis(10)),
        ("c", Duration::from_millis(20)),
    ] {
        let log = Rc::clone(&log);
        event_loop.call_later(delay, move |_| log.borrow_mut().push(name));
    }
    assert!(event_loop.run_until(None).unwrap(), "everything finished");
    assert_eq!(*log.borrow(), ["a", "b", "c"]);
}

#[test]
fn run_until_gives_up_at_the_deadline_and_keeps_the_handler() {
    let mut event_loop = EventLoop::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let token: Token = event_loop
        .register(Acceptor { listener, log }, Interest::READABLE)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_millis(50);
    assert!(
        !event_loop.run_until(Some(deadline)).unwrap(),
        "nobody connected: not finished"
    );
    assert!(std::time::Instant::now() >= deadline);
    assert_eq!(
        event_loop.pending(),
        1,
        "the acceptor ({token:?}) is still registered"
    );
}
