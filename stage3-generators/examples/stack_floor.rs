//! The floor under the million-coroutine row: what the kernel alone charges for a
//! million stacks, before any coroutine runs.
//!
//! ```text
//! cargo run --release -p stage3-generators --example stack_floor -- 1000000
//! ```
//!
//! Every suspended coroutine holds at least one page of its own stack, and a page is
//! only allocated when first touched: one page fault per coroutine, whatever the runtime
//! around it does. This example takes `COUNT` stacks from the pool (guard pages
//! installed, as `Generator::new` would) and writes one word at the top of each, as
//! `switch::init` does, then gives them back. Compare its total with the
//! `coroutine_sleep_bench` example at the same count: the difference is what the event
//! loop, the tasks and the switches cost.

use std::process::ExitCode;
use std::time::Instant;

use stage3_generators::stack::{self, DEFAULT_STACK_SIZE, Stack};

fn main() -> ExitCode {
    let count = match std::env::args().nth(1).map(|arg| arg.parse::<usize>()) {
        Some(Ok(count)) if count > 0 => count,
        _ => {
            eprintln!("usage: stack_floor COUNT (how many stacks, e.g. 1000000)");
            return ExitCode::from(2);
        }
    };
    let mut stacks = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        match Stack::take() {
            Ok(stack) => stacks.push(stack),
            Err(error) => {
                eprintln!("error: stack {} of {count}: {error}", stacks.len() + 1);
                return ExitCode::FAILURE;
            }
        }
    }
    let taken = start.elapsed();
    for stack in &stacks {
        // SAFETY: the top word of a stack we hold and nothing runs on.
        unsafe { stack.top().cast::<u64>().sub(1).write_volatile(1) };
    }
    let total = start.elapsed();
    let guard = stacks.first().map_or("none".to_string(), |s| {
        format!("{:?}", s.guard()).to_lowercase()
    });
    shared::say!(
        "{count} stacks of {} KiB taken from the pool, guard pages by {guard}: {:.3} s",
        DEFAULT_STACK_SIZE / 1024,
        taken.as_secs_f64()
    );
    shared::say!(
        "the first page of each touched, one page fault each: {:.3} s ({:.2} µs per page)",
        (total - taken).as_secs_f64(),
        (total - taken).as_secs_f64() * 1e6 / count as f64
    );
    shared::say!(
        "the floor for {count} stackful coroutines on this machine: {:.3} s",
        total.as_secs_f64()
    );
    stacks.into_iter().for_each(Stack::give_back);
    stack::release_free_stacks();
    ExitCode::SUCCESS
}
