//! What a coroutine stack overflow looks like: a message naming the guard page, then
//! death by SIGSEGV (SIGBUS on macOS), never silent memory corruption.
//!
//! `cargo run -p stage3-generators --example overflow`

use std::hint::black_box;

use stage3_generators::generator::{Generator, Yielder};

/// About 1 KiB of stack per call, with no end: 256 KiB last some 240 calls.
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = black_box([depth as u8; 1024]);
    recurse(depth + 1) + u64::from(frame[black_box(7)])
}

fn main() {
    let mut generator = Generator::new(|_: &Yielder<(), ()>, ()| {
        black_box(recurse(0));
    });
    generator.resume(());
}
