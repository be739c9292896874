//! The `slow-server` binary as a child process, for the tests that need the real thing:
//! signals, exit codes, stdout, memory.

#![allow(dead_code)] // each test file uses its own part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use shared::server::ServerStats;

/// Upper bound for anything that should happen "soon": generous, so a loaded CI machine
/// cannot make a correct server fail.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A running `slow-server` on a free port of 127.0.0.1, with its stdout and stderr read
/// line by line. Killed when dropped, if still running.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// Every stderr line seen so far, for failure messages.
    pub stderr_seen: Vec<String>,
}

fn lines(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl ServerProcess {
    /// `slow-server --listen 127.0.0.1:0 ARGS...`, once it says where it listens.
    pub fn start(args: &[&str]) -> ServerProcess {
        ServerProcess::start_on("127.0.0.1:0", args)
    }

    pub fn start_on(listen: &str, args: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_slow-server"))
            .args(["--listen", listen])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start slow-server");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        let mut server = ServerProcess {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            stdout,
            stderr,
            stderr_seen: Vec::new(),
        };
        let banner = server.stderr_line("listening on ");
        // `slow-server: listening on ADDR, ...`
        server.addr = banner
            .split_once("listening on ")
            .and_then(|(_, rest)| rest.split(',').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no address in {banner:?}"));
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with our own child's pid; it cannot touch our memory.
        let status = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(status, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// The next stderr line that contains `needle`; fails after PATIENCE.
    pub fn stderr_line(&mut self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let left = PATIENCE.saturating_sub(start.elapsed());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no stderr line with {needle:?}: {:?}", self.stderr_seen),
            }
        }
    }

    /// Reads `stats` lines from stdout until one satisfies `check`; fails after PATIENCE.
    pub fn stats_until(&mut self, what: &str, check: impl Fn(&ServerStats) -> bool) -> ServerStats {
        let start = Instant::now();
        let mut last = None;
        loop {
            let left = PATIENCE.saturating_sub(start.elapsed());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    let stats: ServerStats = line.parse().expect("a stats line");
                    if check(&stats) {
                        return stats;
                    }
                    last = Some(stats);
                }
                Err(_) => panic!("{what}: never seen; last {last:?}"),
            }
        }
    }

    /// Every stdout line left, until the process closes it.
    pub fn rest_of_stdout(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        while let Ok(line) = self.stdout.recv_timeout(PATIENCE) {
            rest.push(line);
        }
        rest
    }

    /// Waits for the process to end; fails after `within`.
    pub fn exit_within(&mut self, within: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < within,
                "still running after {within:?}; stderr: {:?}",
                self.stderr_seen
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Sends `Request {id}` on a new connection and returns it, the answer still to come.
pub fn send_request(addr: SocketAddr, id: u64) -> TcpStream {
    let mut stream = connect(addr);
    stream
        .write_all(format!("Request {id}\n").as_bytes())
        .unwrap();
    stream
}

/// Everything the server sends until it closes the connection.
pub fn read_to_close(stream: TcpStream) -> String {
    let mut text = String::new();
    BufReader::new(stream)
        .read_to_string(&mut text)
        .expect("EOF before the timeout");
    text
}
