//! Anti-pattern 2: starting an event loop inside a running one.
//!
//! ```text
//! cargo run --release -p stage4-async-await --example nested_block_on
//! ```
//!
//! asyncio refuses with "asyncio.run() cannot be called from a running event loop"; our
//! `block_on` refuses too, with a panic that says what to write instead. The panic ends
//! the task only; its JoinHandle hands the message over.

fn main() {
    // Rust's panic hook would print the message (and a backtrace) as well: once is enough.
    std::panic::set_hook(Box::new(|_| {}));
    let message = stage4_async_await::anti_patterns::nested_block_on();
    shared::say!("block_on inside a task:\n  {message}");
}
