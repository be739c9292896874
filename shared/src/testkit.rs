//! Servers that misbehave on purpose, and the [`contract`] every stage's tests check.
//!
//! A client is only as trustworthy as its handling of a bad server. Each stage's tests
//! point its `run` at one of these and check that the report fails with the right error
//! instead of passing. Blocking std networking, a thread per connection: simple on purpose,
//! because this is not what the stages are about.

pub mod contract;
pub mod output;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

/// How a [`RogueServer`] answers each line it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// `Request {id+1}` for `Request {id}`: someone else's answer.
    WrongId,
    /// `ERROR go away`, as the slow server answers bad input.
    ErrorLine,
    /// Bytes that are not UTF-8, then a newline.
    InvalidUtf8,
    /// Half a line, then the connection is closed.
    CloseMidLine,
    /// Closes the connection without a word.
    Hangup,
    /// Reads the request and never answers; the connection stays open until the client
    /// gives up.
    Silent,
    /// The right answer, one byte every [`DRIP_INTERVAL`]: each read is answered well
    /// within any socket timeout, yet the whole line takes longer than the contract's
    /// timeout. A client must bound the whole request, not each read.
    Drip,
    /// The right answer ending in `\r\n`, as many servers end lines: not a misbehaviour,
    /// and a client must accept it.
    Crlf,
}

/// How often [`Misbehaviour::Drip`] sends a byte.
pub const DRIP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// A server on `127.0.0.1` that reads request lines and answers them wrongly.
/// Dropping it stops accepting; connections already open end with their clients.
#[derive(Debug)]
pub struct RogueServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RogueServer {
    /// Starts it on a free port.
    pub fn start(misbehaviour: Misbehaviour) -> std::io::Result<RogueServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(stream) = stream {
                    thread::spawn(move || misbehave(stream, misbehaviour));
                }
            }
        });
        Ok(RogueServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RogueServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn misbehave(stream: TcpStream, misbehaviour: Misbehaviour) {
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(_) => return,
    };
    if misbehaviour == Misbehaviour::Hangup {
        return;
    }
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let id: u64 = line
            .strip_prefix("Request ")
            .and_then(|id| id.parse().ok())
            .unwrap_or(0);
        let answer: Vec<u8> = match misbehaviour {
            Misbehaviour::WrongId => format!("Request {}\n", id + 1).into_bytes(),
            Misbehaviour::ErrorLine => b"ERROR go away\n".to_vec(),
            Misbehaviour::InvalidUtf8 => b"Request \xff\xfe\n".to_vec(),
            Misbehaviour::CloseMidLine => b"Requ".to_vec(),
            Misbehaviour::Silent => continue,
            Misbehaviour::Hangup => return,
            Misbehaviour::Drip => {
                for byte in format!("Request {id}\n").bytes() {
                    thread::sleep(DRIP_INTERVAL);
                    // The client gave up: so do we.
                    if writer.write_all(&[byte]).is_err() {
                        return;
                    }
                }
                continue;
            }
            Misbehaviour::Crlf => format!("Request {id}\r\n").into_bytes(),
        };
        if writer.write_all(&answer).is_err() || misbehaviour == Misbehaviour::CloseMidLine {
            return;
        }
    }
}

/// An address on `127.0.0.1` where nothing listens: connecting is refused.
pub fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    addr
}
