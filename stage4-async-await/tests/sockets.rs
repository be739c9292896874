//! Sockets: a listener and a stream talk, and several tasks may wait on one socket (to
//! accept, to read) without any of them being forgotten.

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::time::Duration;

use stage4_async_await::net::{TcpListener, TcpStream};
use stage4_async_await::{block_on, join_all, sleep, spawn, timeout, yield_now};

const MS: Duration = Duration::from_millis(1);

#[test]
fn a_listener_and_a_stream_talk() {
    block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut decoder = shared::LineDecoder::new();
            while let Some(line) = stream.read_line(&mut decoder).await.unwrap() {
                stream
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let client = TcpStream::connect(addr).await.unwrap();
        // Two thousand lines in one write_all: the server reads them in pieces, lines
        // split across reads, and echoes each (25 KB: well within the socket buffers,
        // since this client writes everything before it reads).
        let lines: String = (0..2_000).map(|i| format!("Request {i}\n")).collect();
        client.write_all(lines.as_bytes()).await.unwrap();
        client.shutdown_write().unwrap();
        let mut decoder = shared::LineDecoder::new();
        let mut count = 0;
        while let Some(line) = client.read_line(&mut decoder).await.unwrap() {
            assert_eq!(line, format!("Request {count}"));
            count += 1;
        }
        assert_eq!(count, 2_000);
        server.await.unwrap();
    });
}

/// Runs `future` with a generous deadline: a task that is never woken fails the test
/// instead of hanging it.
fn within_10_s<F: Future>(future: F) -> F::Output {
    block_on(timeout(Duration::from_secs(10), future)).expect("a waiter was never woken")
}

#[test]
fn several_tasks_accepting_on_one_listener_serve_every_client() {
    let served = within_10_s(async {
        let listener = Rc::new(TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap());
        let addr = listener.local_addr().unwrap();
        let mut served = Vec::new();
        // Rounds of four acceptors, each taking one connection: every acceptor must be
        // woken, not only the last one that waited.
        for round in 0..5u64 {
            let acceptors: Vec<_> = (0..4)
                .map(|_| {
                    let listener = Rc::clone(&listener);
                    spawn(async move {
                        let (stream, _) = listener.accept().await.unwrap();
                        let mut buf = [0u8; 64];
                        let read = stream.read(&mut buf).await.unwrap();
                        stream.write_all(&buf[..read]).await.unwrap();
                    })
                })
                .collect();
            yield_now().await; // every acceptor now waits on the listener
            let clients: Vec<_> = (0..4)
                .map(|i| {
                    spawn(async move {
                        let stream = TcpStream::connect(addr).await.unwrap();
                        let message = format!("client {}", round * 4 + i);
                        stream.write_all(message.as_bytes()).await.unwrap();
                        let mut buf = [0u8; 64];
                        let read = stream.read(&mut buf).await.unwrap();
                        assert_eq!(&buf[..read], message.as_bytes());
                        round * 4 + i
                    })
                })
                .collect();
            for result in join_all(acceptors).await {
                result.unwrap();
            }
            for result in join_all(clients).await {
                served.push(result.unwrap());
            }
        }
        served
    });
    assert_eq!(served, (0..20).collect::<Vec<u64>>());
}

/// Two tasks wait to read one stream, through `read` futures or through `poll_read`;
/// one byte arrives, then another: each byte must wake a reader still waiting.
fn two_tasks_read_one_stream(through_poll_read: bool) -> Vec<u8> {
    within_10_s(async move {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let stream = Rc::new(listener.accept().await.unwrap().0);
        let got = Rc::new(RefCell::new(Vec::new()));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (stream, got) = (Rc::clone(&stream), Rc::clone(&got));
                spawn(async move {
                    let mut buf = [0u8; 1];
                    let read = if through_poll_read {
                        poll_fn(|cx| stream.poll_read(cx, &mut buf)).await
                    } else {
                        stream.read(&mut buf).await
                    };
                    assert_eq!(read.unwrap(), 1);
                    got.borrow_mut().push(buf[0]);
                })
            })
            .collect();
        yield_now().await; // both readers now wait on the stream
        for (sent, byte) in [b'a', b'b'].into_iter().enumerate() {
            client.write_all(&[byte]).await.unwrap();
            while got.borrow().len() == sent {
                sleep(MS).await;
            }
        }
        for result in join_all(readers).await {
            result.unwrap();
        }
        Rc::into_inner(got).unwrap().into_inner()
    })
}

#[test]
fn two_tasks_reading_one_stream_are_both_woken() {
    assert_eq!(two_tasks_read_one_stream(false), b"ab");
    assert_eq!(two_tasks_read_one_stream(true), b"ab");
}

#[test]
fn a_dropped_read_leaves_the_other_readers_waiting() {
    // One reader gives up (its future is dropped by a timeout); the other still waits,
    // and must still be woken by the next byte.
    let got = within_10_s(async {
        let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let stream = Rc::new(listener.accept().await.unwrap().0);
        let patient = spawn({
            let stream = Rc::clone(&stream);
            async move {
                let mut buf = [0u8; 1];
                stream.read(&mut buf).await.unwrap();
                buf[0]
            }
        });
        yield_now().await;
        let mut buf = [0u8; 1];
        assert!(timeout(10 * MS, stream.read(&mut buf)).await.is_err());
        client.write_all(b"z").await.unwrap();
        patient.await.unwrap()
    });
    assert_eq!(got, b'z');
}
