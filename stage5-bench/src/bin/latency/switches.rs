//! The rows that hand the CPU to someone else and get it back: two threads through the
//! kernel, our coroutines and tasks without it, and a loopback round trip, which is two
//! wake-ups through the network stack.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Instant;

use crate::{Row, measure, per_op};

// ANCHOR: switch
/// Two threads ping-pong one byte through two pipes, both on one CPU where the OS lets
/// us pin them, so every hand-over is a real switch: one thread blocks in `read`, the
/// kernel runs the other. One round trip is two switches; the row is one of them,
/// with the `write` and `read` that cause it.
#[cfg(unix)]
pub(crate) fn context_switch(runs: usize) -> Row {
    use stage5_bench::pin;
    const ROUND_TRIPS: u64 = 20_000;
    let cpu = pin::first_allowed_cpu();
    let once = || -> Result<f64, String> {
        let (mut ping_r, mut ping_w) = pipe()?;
        let (mut pong_r, mut pong_w) = pipe()?;
        let echo = thread::spawn(move || -> std::io::Result<()> {
            if let Some(cpu) = cpu {
                let _ = pin::to(cpu); // a thread of its own: no need to undo it
            }
            let mut byte = [0u8];
            for _ in 0..ROUND_TRIPS {
                ping_r.read_exact(&mut byte)?;
                pong_w.write_all(&byte)?;
            }
            Ok(())
        });
        let start = Instant::now();
        let mut byte = [7u8];
        for _ in 0..ROUND_TRIPS {
            ping_w.write_all(&byte).map_err(|e| e.to_string())?;
            pong_r.read_exact(&mut byte).map_err(|e| e.to_string())?;
        }
        let elapsed = start.elapsed();
        echo.join()
            .map_err(|_| "the echo thread panicked".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(per_op(elapsed, ROUND_TRIPS * 2))
    };
    // This thread is pinned only while it measures, in a thread of its own.
    let ns = thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Some(cpu) = cpu {
                    let _ = pin::to(cpu); // best effort: the row says which CPU was asked
                }
                measure(runs, once)
            })
            .join()
            .unwrap_or_else(|_| Err("the measuring thread panicked".into()))
    });
    let how = match cpu {
        Some(cpu) => format!(
            "two threads ping-ponging a byte through pipes, both pinned to CPU {cpu}; per switch"
        ),
        None => "two threads ping-ponging a byte through pipes (this OS cannot pin them to \
                 one CPU, so it may run them on two); per switch"
            .into(),
    };
    Row {
        name: "thread context switch".into(),
        how,
        article: None,
        ns,
    }
}
// ANCHOR_END: switch

#[cfg(not(unix))]
pub(crate) fn context_switch(_runs: usize) -> Row {
    Row {
        name: "thread context switch".into(),
        how: "not measured on this OS".into(),
        article: None,
        ns: Err("not measured on this OS".into()),
    }
}

#[cfg(unix)]
fn pipe() -> Result<(std::fs::File, std::fs::File), String> {
    use std::fs::File;
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe succeeded, so both descriptors are open and now owned by us alone.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

// Our own switches: stage 3 and stage 4.

pub(crate) fn coroutine_switch(runs: usize) -> Row {
    use stage3_generators::generator::{Generator, GeneratorState, Yielder};
    const ROUND_TRIPS: u64 = 1_000_000;
    let mut echo = Generator::new(|yielder: &Yielder<u64, u64>, mut x: u64| {
        loop {
            x = yielder.suspend(x);
        }
    });
    Row {
        name: "stage 3 resume + suspend".into(),
        how: "Generator::resume into a coroutine that suspends straight back: two stack \
              switches"
            .into(),
        article: None,
        ns: measure(runs, || {
            let start = Instant::now();
            for i in 0..ROUND_TRIPS {
                match echo.resume(black_box(i)) {
                    GeneratorState::Yielded(x) => black_box(x),
                    GeneratorState::Complete(never) => never,
                };
            }
            Ok(per_op(start.elapsed(), ROUND_TRIPS))
        }),
    }
}

pub(crate) fn task_wake(runs: usize) -> Row {
    const WAKES: u64 = 200_000;
    Row {
        name: "stage 4 task wake + poll".into(),
        how: "a spawned task that calls yield_now() in a loop: wake its own waker, return \
              Pending, be polled again"
            .into(),
        article: None,
        ns: measure(runs, || {
            let event_loop =
                stage4_async_await::EventLoop::new().map_err(|e| format!("event loop: {e}"))?;
            event_loop.block_on(async {
                let task = stage4_async_await::spawn(async {
                    let start = Instant::now();
                    for _ in 0..WAKES {
                        stage4_async_await::yield_now().await;
                    }
                    start.elapsed()
                });
                task.await
                    .map(|elapsed| per_op(elapsed, WAKES))
                    .map_err(|e| e.to_string())
            })
        }),
    }
}

// Through the network stack.

pub(crate) fn tcp_round_trip(runs: usize) -> Row {
    const ROUND_TRIPS: u64 = 2_000;
    let once = || -> Result<f64, String> {
        let err = |e: std::io::Error| format!("loopback: {e}");
        let listener = TcpListener::bind("127.0.0.1:0").map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        let echo = thread::spawn(move || -> std::io::Result<()> {
            let (mut stream, _) = listener.accept()?;
            stream.set_nodelay(true)?;
            let mut byte = [0u8];
            for _ in 0..ROUND_TRIPS {
                stream.read_exact(&mut byte)?;
                stream.write_all(&byte)?;
            }
            Ok(())
        });
        let mut stream = TcpStream::connect(addr).map_err(err)?;
        stream.set_nodelay(true).map_err(err)?;
        let mut byte = [1u8];
        let start = Instant::now();
        for _ in 0..ROUND_TRIPS {
            stream.write_all(&byte).map_err(err)?;
            stream.read_exact(&mut byte).map_err(err)?;
        }
        let elapsed = start.elapsed();
        echo.join()
            .map_err(|_| "the echo thread panicked".to_string())?
            .map_err(err)?;
        Ok(per_op(elapsed, ROUND_TRIPS))
    };
    Row {
        name: "loopback TCP round trip".into(),
        how: "one byte to an echo thread on 127.0.0.1 and back, TCP_NODELAY".into(),
        article: Some((
            "send a packet over the network (one way, where ours is a round trip)",
            "5.5 hours",
        )),
        ns: measure(runs, once),
    }
}
