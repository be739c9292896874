//! The completion driver (`--driver uring`): the same executor and timers, with socket
//! I/O done by io_uring instead of readiness.
//!
//! Read [`crate::net`] first. There a future asks the kernel "can I read?" (epoll), then
//! reads itself, and lends the kernel a `&mut [u8]` only for the length of one `read(2)`.
//! Here a future hands the kernel the whole operation, "read into this buffer", and the
//! kernel answers later, in a completion queue, "done: 42 bytes". Between the two, the
//! kernel owns the buffer. That is why this module's [`TcpStream::read`] takes a
//! `Vec<u8>` by value and gives it back with the result: a borrowed `&mut [u8]` would
//! end with the future, and a future can be dropped at any `.await` while the kernel
//! still writes into the memory.
//!
//! The design keeps the runtime as it is (as tokio-uring does inside tokio): the ring's
//! file descriptor is registered with the mio reactor like a socket. It becomes readable
//! when completions wait in the ring; the reactor then reaps them and wakes each
//! operation's future through the waker stored in the operation's slot (the slot's key is
//! the `user_data` that io_uring hands back). Timers stay in the reactor's timer queue.
//!
//! ```text
//! cargo run -p stage4-async-await -- --driver uring
//! cargo run --release -p stage4-async-await -- --driver uring --requests 9000 --delay-ms 100
//! STAGE4_URING_SIMULATE=EPERM cargo run -p stage4-async-await -- --driver uring
//! ```
//!
//! - [`TcpStream`]: `connect`, and owned-buffer `read`, `write`, `write_all`, `flush`;
//!   cancel-safe: what the kernel did for a dropped future goes to the next one.
//! - [`TcpListener`]: `bind`, and `accept` (one multishot accept for every connection,
//!   Linux 5.19 and later; one accept each before).
//! - [`make_tcp_request`] and [`consume_response`]: the article's client on this driver.
//! - [`sleep`]: a sleep as an io_uring timeout, to compare with the timer queue
//!   (`examples/uring_sleep_bench.rs`).
//! - [`check`]: is io_uring usable here? (A clear error if not: old kernel, disabled by
//!   `kernel.io_uring_disabled`, refused by a container's seccomp filter.)

mod client;
mod listener;
mod net;
mod op;
pub(crate) mod ring;

pub use client::{consume_response, make_tcp_request};
pub use listener::TcpListener;
pub use net::{TcpStream, sleep};
pub use shared::uring::simulate_setup_error;

use crate::context::with_current;

/// Creates this loop's ring now, so that a machine without io_uring fails before any
/// request, with the reason. Call it inside `block_on`; every operation calls it anyway.
pub fn check() -> std::io::Result<()> {
    with_current("uring::check", |event_loop| {
        event_loop.reactor().uring().map(drop)
    })
}
