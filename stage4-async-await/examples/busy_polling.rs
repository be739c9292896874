//! Anti-pattern 4: an executor that polls without wakers burns a CPU core while it
//! waits; ours sleeps in `epoll_wait`.
//!
//! ```text
//! cargo run --release -p stage4-async-await --example busy_polling
//! ```
//!
//! Both executors wait for the same thing: a futures-crate oneshot channel that another
//! thread fills after 500 ms. The CPU time is the calling thread's, from `getrusage`.

use std::time::Duration;

use stage4_async_await::anti_patterns::busy_polling;

fn main() {
    let times = busy_polling(Duration::from_millis(500));
    shared::say!(
        "waiting {} ms for a oneshot channel:",
        times.wait.as_millis()
    );
    shared::say!(
        "  busy-polling executor: {:>4} ms of CPU ({} polls)",
        times.busy_polling.as_millis(),
        times.busy_polls
    );
    shared::say!(
        "  our event loop:        {:>4} ms of CPU (woken once, through its mio::Waker)",
        times.event_loop.as_millis()
    );
}
