//! The floor: how fast this machine opens connections when nothing else happens. The
//! same processes, addresses, window and accept queues as the real run, but each
//! process is a bare loop over mio: clients start connects and count the handshakes that
//! end; acceptors accept and keep the sockets. No tasks, no wakers, no timers, no reads.
//!
//! Most of the cost of a connection is the kernel's (a handshake, two sockets, two
//! files, two epoll entries), and this is that cost alone; the real run's opening rate
//! is given as a fraction of it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use shared::Error;

use super::net::{kind_of, start_connect};
use super::wire::{ABORT, Message, OPEN, STOP};
use super::{REPORT_EVERY, read_commands, set_fd_limit};

const COMMANDS: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// What a floor client is told (the hidden subcommand `floor-client`): the same as a
/// real client, less the answers.
#[derive(clap::Args, Debug, Clone)]
pub struct FloorClientArgs {
    /// The acceptors' shared address
    #[arg(long)]
    pub server: SocketAddr,
    /// Source addresses, used in turn
    #[arg(long, value_delimiter = ',', required = true)]
    pub sources: Vec<Ipv4Addr>,
    /// How many connections it opens
    #[arg(long)]
    pub connections: u64,
    /// Connects in progress at once, at most
    #[arg(long)]
    pub window: usize,
    /// The open-file limit to run with
    #[arg(long)]
    pub fd_limit: u64,
    /// How long opening may take
    #[arg(long)]
    pub open_deadline_ms: u64,
}

impl FloorClientArgs {
    /// The command line that gives these arguments to a child.
    pub fn to_args(&self) -> Vec<String> {
        let sources: Vec<String> = self.sources.iter().map(|s| s.to_string()).collect();
        [
            "floor-client",
            "--server",
            &self.server.to_string(),
            "--sources",
            &sources.join(","),
            "--connections",
            &self.connections.to_string(),
            "--window",
            &self.window.to_string(),
            "--fd-limit",
            &self.fd_limit.to_string(),
            "--open-deadline-ms",
            &self.open_deadline_ms.to_string(),
        ]
        .map(String::from)
        .to_vec()
    }
}

/// Commands from the parent, and a mio waker that makes `poll` return when one comes.
fn commands(poll: &Poll) -> Result<Receiver<String>, Error> {
    let waker = Waker::new(poll.registry(), COMMANDS).map_err(|e| Error::io("mio waker", e))?;
    let waker = Arc::new(waker);
    let (sender, receiver) = channel();
    let (on_line, on_end) = (Arc::clone(&waker), sender.clone());
    read_commands(
        move |line| {
            let _ = sender.send(line);
            let _ = on_line.wake();
        },
        move || {
            let _ = on_end.send(STOP.to_string());
            let _ = waker.wake();
        },
    );
    Ok(receiver)
}

fn wait_for(poll: &mut Poll, commands: &Receiver<String>, word: &str) -> Result<(), Error> {
    let mut events = Events::with_capacity(8);
    loop {
        while let Ok(line) = commands.try_recv() {
            match line.trim() {
                w if w == word => return Ok(()),
                STOP => return Err(Error::Other(format!("stopped before `{word}`"))),
                _ => {}
            }
        }
        poll_once(poll, &mut events, None)?;
    }
}

fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Option<Duration>) -> Result<(), Error> {
    match poll.poll(events, timeout) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(Error::io("epoll_wait", e)),
    }
}

/// Opens `connections` connections as fast as the kernel completes them, then holds
/// them until told to stop.
pub fn run_client(args: FloorClientArgs) -> Result<(), Error> {
    set_fd_limit(args.fd_limit)?;
    let mut poll = Poll::new().map_err(|e| Error::io("epoll_create", e))?;
    let commands = commands(&poll)?;
    println!("{}", Message::new("ready"));
    wait_for(&mut poll, &commands, OPEN)?;

    let total = args.connections as usize;
    // One slot per attempt, in order: its token is its index.
    let mut sockets: Vec<Option<TcpStream>> = Vec::with_capacity(total);
    let mut connecting = vec![false; total];
    let (mut opened, mut in_progress) = (0u64, 0usize);
    let mut failures = std::collections::BTreeMap::<String, u64>::new();
    let fail = |failures: &mut std::collections::BTreeMap<String, u64>, error: &io::Error| {
        *failures
            .entry(format!("connect_{}", kind_of(error)))
            .or_insert(0) += 1;
    };
    let mut events = Events::with_capacity(1024);
    let started = Instant::now();
    let mut next_report = started + REPORT_EVERY;
    loop {
        // Keep the window full.
        while in_progress < args.window && sockets.len() < total {
            let i = sockets.len();
            let source = args.sources[i % args.sources.len()];
            let started = start_connect(source, args.server).and_then(|socket| {
                let mut stream = TcpStream::from_std(socket.into());
                poll.registry()
                    .register(&mut stream, Token(i), Interest::WRITABLE)?;
                Ok(stream)
            });
            match started {
                Ok(stream) => {
                    sockets.push(Some(stream));
                    connecting[i] = true;
                    in_progress += 1;
                }
                Err(error) => {
                    sockets.push(None);
                    fail(&mut failures, &error);
                }
            }
        }
        let failed: u64 = failures.values().sum();
        if opened + failed >= args.connections
            || started.elapsed() >= Duration::from_millis(args.open_deadline_ms)
        {
            break;
        }
        let now = Instant::now();
        poll_once(
            &mut poll,
            &mut events,
            Some(next_report.saturating_duration_since(now)),
        )?;
        for event in events.iter() {
            let i = event.token().0;
            let Some(Some(socket)) = sockets.get(i).filter(|_| connecting[i]) else {
                continue;
            };
            // Writable: the handshake is over, one way or the other.
            match socket.take_error() {
                Ok(None) => match socket.peer_addr() {
                    Ok(_) => opened += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                    Err(e) => fail(&mut failures, &e),
                },
                Ok(Some(e)) | Err(e) => fail(&mut failures, &e),
            }
            connecting[i] = false;
            in_progress -= 1;
        }
        if Instant::now() >= next_report {
            next_report += REPORT_EVERY;
            let failed: u64 = failures.values().sum();
            if failed > 0 {
                let mut message = Message::new("failures");
                message.fields = failures.clone();
                println!("{message}");
            }
            let progress = Message::new("progress")
                .with("opened", opened)
                .with("failed", failed);
            println!("{progress}");
        }
    }
    let mut failed: u64 = failures.values().sum();
    if opened + failed < args.connections {
        let late = args.connections - opened - failed;
        *failures.entry("connect_deadline".into()).or_insert(0) += late;
        failed += late;
    }
    if !failures.is_empty() {
        let mut message = Message::new("failures");
        message.fields = failures;
        println!("{message}");
    }
    println!(
        "{}",
        Message::new("opened")
            .with("ok", opened)
            .with("failed", failed)
    );
    let _ = wait_for(&mut poll, &commands, STOP);
    // A reset rather than a FIN: no TIME_WAIT left to skew the next run's figures.
    for socket in sockets.iter().flatten() {
        let socket = socket2::SockRef::from(socket);
        let _ = socket.set_linger(Some(Duration::ZERO));
    }
    Ok(())
}

/// What a floor acceptor is told (the hidden subcommand `floor-acceptor`).
#[derive(clap::Args, Debug, Clone)]
pub struct FloorServerArgs {
    /// The shared port; 0 for the first acceptor, which picks it
    #[arg(long)]
    pub port: u16,
    /// The listen backlog
    #[arg(long)]
    pub backlog: u64,
    /// The open-file limit to run with
    #[arg(long)]
    pub fd_limit: u64,
}

impl FloorServerArgs {
    /// The command line that gives these arguments to a child.
    pub fn to_args(&self) -> Vec<String> {
        [
            "floor-acceptor",
            "--port",
            &self.port.to_string(),
            "--backlog",
            &self.backlog.to_string(),
            "--fd-limit",
            &self.fd_limit.to_string(),
        ]
        .map(String::from)
        .to_vec()
    }
}

/// Accepts and keeps every connection until told to stop.
pub fn run_server(args: FloorServerArgs) -> Result<(), Error> {
    set_fd_limit(args.fd_limit)?;
    let mut poll = Poll::new().map_err(|e| Error::io("epoll_create", e))?;
    let commands = commands(&poll)?;
    let mut listener = listen_shared(args.port, args.backlog)
        .map_err(|e| Error::io(format!("listening on 127.0.0.1:{}", args.port), e))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| Error::io("epoll_ctl", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("getsockname", e))?
        .port();
    println!(
        "{}",
        Message::new("listening").with("port", u64::from(port))
    );

    let mut accepted: Vec<TcpStream> = Vec::new();
    let mut fd_exhausted = 0;
    let mut events = Events::with_capacity(1024);
    let mut next_report = Instant::now() + REPORT_EVERY;
    let stats = |accepted: &Vec<TcpStream>, fd_exhausted| {
        let open = accepted.len() as u64;
        Message::new("stats")
            .with("open", open)
            .with("peak_open", open)
            .with("accepted", open)
            .with("fd_exhausted", fd_exhausted)
    };
    'run: loop {
        let now = Instant::now();
        poll_once(
            &mut poll,
            &mut events,
            Some(next_report.saturating_duration_since(now)),
        )?;
        // Accept whether or not the listener's event came: after running out of
        // descriptors it would not come again.
        loop {
            match listener.accept() {
                Ok((stream, _)) => accepted.push(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if shared::is_fd_exhaustion(&e) => {
                    fd_exhausted += 1;
                    break;
                }
                Err(_) => continue, // the peer gave up before we accepted
            }
        }
        while let Ok(line) = commands.try_recv() {
            if matches!(line.trim(), STOP | ABORT) {
                break 'run;
            }
        }
        if Instant::now() >= next_report {
            next_report += REPORT_EVERY;
            println!("{}", stats(&accepted, fd_exhausted));
        }
    }
    println!("{}", stats(&accepted, fd_exhausted));
    Ok(())
}

/// A listener on 127.0.0.1:`port` that other processes may share (`SO_REUSEPORT`).
fn listen_shared(port: u16, backlog: u64) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}
