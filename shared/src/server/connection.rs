//! One connection of the slow server: its state, the lines it reads, the answers it
//! writes and the errors it sends. The loop in [`super::event_loop`] calls these methods
//! when the connection's socket is ready or one of its timers fires; each returns whether
//! to keep the connection, and asks for timers through a [`Ctx`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};

use crate::protocol::{DecodeError, LineDecoder};

/// Lines one connection may have waiting for their delay before we stop reading from it:
/// a client that pipelines without bound must not make us buffer without bound.
pub const MAX_PIPELINED: usize = 1024;

/// Bytes one connection may have in lines waiting for their delay and answers the client
/// has not read, before we stop reading from it: a client that sends and never reads
/// must not make us buffer without bound either. Every waiting line becomes an answer,
/// so both count. 64 KiB is far more than the article's requests need, and little
/// beside what the kernel buffers for each socket.
pub const MAX_UNSENT: usize = 64 * 1024;

/// How long a connection we closed for bad input may take to close its side, so the
/// `ERROR` line is read instead of lost to a reset.
const LINGER: Duration = Duration::from_secs(2);

/// What a timer does when it fires.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKind {
    /// Answer the oldest pending line of the connection.
    Answer,
    /// Give up on a lingering close.
    LingerExpired,
    /// The connection may have been idle long enough: look, and close it or look again.
    IdleCheck,
}

/// Timers a connection asks for while handling an event.
pub(super) struct Ctx {
    pub(super) now: Instant,
    pub(super) new_timers: Vec<(Duration, TimerKind)>,
}

/// What to do with a connection after handling an event.
pub(super) enum Next {
    Keep,
    Close,
}

/// What the server knows about one connection. Kept small, because a server holding a
/// million connections holds a million of these: buffers are allocated only while they
/// hold bytes (an idle connection owns no heap memory), and the waiting lines share one
/// byte queue instead of a `String` each.
#[derive(Debug)]
pub(super) struct Connection {
    stream: TcpStream,
    /// Tells this connection from earlier ones that used the same slot, so that a timer
    /// set for one of them does nothing to it.
    pub(super) generation: u32,
    decoder: LineDecoder,
    /// Lines waiting for their delay, oldest first, each with its `\n`: the answers to
    /// come, byte for byte. Their timers are in the queue.
    pending: VecDeque<u8>,
    /// How many lines `pending` holds.
    pending_lines: usize,
    /// Bytes to send, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// When the client last sent bytes or was sent its last answer.
    pub(super) last_active: Instant,
    /// The peer sent EOF: no more lines will come, but answers still go out.
    read_closed: bool,
    /// We sent `ERROR`: input is discarded until the peer closes or `LINGER` ends.
    pub(super) closing: bool,
    /// `shutdown(Write)` was done after the error line went out.
    write_shut: bool,
    /// Reading stopped because `MAX_PIPELINED` lines or `MAX_UNSENT` bytes are waiting.
    paused: bool,
    writable_interest: bool,
    /// An `IdleCheck` timer is in the queue: one at a time per connection.
    pub(super) idle_check_queued: bool,
}

impl Connection {
    pub(super) fn new(stream: TcpStream, generation: u32, now: Instant) -> Connection {
        Connection {
            stream,
            generation,
            decoder: LineDecoder::new(),
            pending: VecDeque::new(),
            pending_lines: 0,
            out: Vec::new(),
            written: 0,
            last_active: now,
            read_closed: false,
            closing: false,
            write_shut: false,
            paused: false,
            writable_interest: false,
            idle_check_queued: false,
        }
    }

    /// Lines received and not answered yet.
    pub(super) fn waiting(&self) -> usize {
        self.pending_lines
    }

    /// Nothing to answer and nothing left to send.
    pub(super) fn is_done(&self) -> bool {
        self.pending_lines == 0 && self.out.is_empty()
    }

    /// Nothing to answer and nothing to send: only the idle timeout keeps it open.
    pub(super) fn is_idle(&self) -> bool {
        !self.closing && self.is_done()
    }

    /// Whether this connection holds as much as we let it: then we stop reading.
    fn is_full(&self) -> bool {
        self.pending_lines >= MAX_PIPELINED || self.buffered() >= MAX_UNSENT
    }

    /// Bytes of waiting lines and unsent answers.
    fn buffered(&self) -> usize {
        self.pending.len() + self.out.len() - self.written
    }

    /// Reads until the socket would block, turning complete lines into timers; stops
    /// early, with `paused` set, when the connection is full.
    pub(super) fn read(&mut self, delay: Duration, ctx: &mut Ctx) -> Next {
        let mut buf = [0u8; 4096];
        loop {
            // Lines left in the decoder by an earlier pause come first: the socket may
            // have nothing more to say (the peer sent everything in one write, or left).
            if let Err(error) = self.take_lines(delay, ctx) {
                return self.fail(&error.to_string(), ctx);
            }
            if self.paused || self.read_closed {
                return Next::Keep;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.read_closed = true;
                    if self.closing || self.decoder.finish().is_err() {
                        // The peer is gone or left a line unfinished: nothing to answer.
                        return Next::Close;
                    }
                    return self.close_if_done();
                }
                // After an ERROR line, the rest of the input is drained and dropped.
                Ok(_) if self.closing => continue,
                Ok(n) => {
                    self.last_active = ctx.now;
                    self.decoder.push(&buf[..n]);
                }
                // Drained: edge-triggered readiness will tell us when more arrives.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Reset by the peer, or worse: the connection is gone.
                Err(_) => return Next::Close,
            }
        }
    }

    /// Moves complete lines from the decoder to `pending`, each with its timer, until
    /// the decoder has none left or the connection is full (then `paused` is set).
    fn take_lines(&mut self, delay: Duration, ctx: &mut Ctx) -> Result<(), DecodeError> {
        if self.closing {
            return Ok(());
        }
        loop {
            if self.is_full() {
                self.paused = true;
                return Ok(());
            }
            match self.decoder.next_line()? {
                Some(line) => {
                    self.pending.extend(line.as_bytes());
                    self.pending.push_back(b'\n');
                    self.pending_lines += 1;
                    ctx.new_timers.push((delay, TimerKind::Answer));
                }
                None => return Ok(()),
            }
        }
    }

    /// Reading was paused and the client has caught up (half of each bound is free
    /// again, so we do not flip at every line): read what arrived meanwhile.
    fn resume_if_room(&mut self, delay: Duration, ctx: &mut Ctx) -> Next {
        if self.paused && self.pending_lines < MAX_PIPELINED / 2 && self.buffered() < MAX_UNSENT / 2
        {
            self.paused = false;
            // Bytes may have arrived while paused; their readiness edge has passed,
            // so read now instead of waiting for an event that will not come.
            return self.read(delay, ctx);
        }
        Next::Keep
    }

    /// Sends `ERROR <reason>` and closes politely: no more answers, input discarded.
    fn fail(&mut self, reason: &str, ctx: &mut Ctx) -> Next {
        self.closing = true;
        self.drop_pending();
        self.paused = false;
        self.out
            .extend_from_slice(format!("ERROR {reason}\n").as_bytes());
        ctx.new_timers.push((LINGER, TimerKind::LingerExpired));
        match self.flush(ctx) {
            Next::Close => Next::Close,
            // Keep reading to drain the peer's remaining input until it closes.
            Next::Keep => self.read(Duration::ZERO, ctx),
        }
    }

    /// The delay of the oldest pending line is over: queue its echo.
    pub(super) fn answer_next(&mut self, delay: Duration, ctx: &mut Ctx) -> Next {
        // Timers of a failed connection outlive its cleared queue: nothing to do.
        let Some(newline) = self.pending.iter().position(|&b| b == b'\n') else {
            return Next::Keep;
        };
        self.out.extend(self.pending.drain(..=newline));
        self.pending_lines -= 1;
        if self.pending_lines == 0 {
            self.pending = VecDeque::new(); // give its memory back while idle
        }
        match self.flush(ctx) {
            Next::Close => Next::Close,
            Next::Keep => self.resume_if_room(delay, ctx),
        }
    }

    /// The socket is writable again: send what waits, then read if that made room.
    pub(super) fn on_writable(&mut self, delay: Duration, ctx: &mut Ctx) -> Next {
        match self.flush(ctx) {
            Next::Close => Next::Close,
            Next::Keep => self.resume_if_room(delay, ctx),
        }
    }

    /// Writes until done or the socket would block.
    fn flush(&mut self, ctx: &Ctx) -> Next {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => return Next::Close,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EPIPE or ECONNRESET: the client left mid-delay.
                Err(_) => return Next::Close,
            }
        }
        if !self.out.is_empty() {
            self.last_active = ctx.now; // the idle timeout counts from the last answer
        }
        // Not `clear`: a connection waiting for its next line keeps no buffer.
        self.out = Vec::new();
        self.written = 0;
        if self.closing && !self.write_shut {
            // FIN after the ERROR line; we keep reading until the peer closes too.
            self.write_shut = true;
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        self.close_if_done()
    }

    fn drop_pending(&mut self) {
        self.pending = VecDeque::new();
        self.pending_lines = 0;
    }

    /// A graceful shutdown ran out of time: the lines still waiting get one
    /// `ERROR shutting down` line instead of their echoes (after the answers already on
    /// their way), sent if the socket takes it now. Returns how many lines were cut short.
    pub(super) fn cut_short(&mut self, ctx: &Ctx) -> usize {
        let cut = self.pending_lines;
        if cut > 0 {
            self.drop_pending();
            self.out.extend_from_slice(b"ERROR shutting down\n");
        }
        // One try: the connection is closed right after, whether it took it or not.
        let _ = self.flush(ctx);
        cut
    }

    fn close_if_done(&mut self) -> Next {
        if self.read_closed && self.is_done() {
            Next::Close
        } else {
            Next::Keep
        }
    }

    pub(super) fn register(&mut self, registry: &mio::Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.stream, token, Interest::READABLE)
    }

    pub(super) fn update_interest(
        &mut self,
        registry: &mio::Registry,
        token: Token,
    ) -> io::Result<()> {
        let want_writable = !self.out.is_empty();
        if want_writable != self.writable_interest {
            let interest = if want_writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry.reregister(&mut self.stream, token, interest)?;
            self.writable_interest = want_writable;
        }
        Ok(())
    }
}
