//! The article's first generator, in Rust: Python's `send` and `yield` as `resume` and
//! `suspend`.
//!
//! `cargo run -p stage3-generators --example running_sum`

use stage3_generators::generator::{Generator, GeneratorState};

fn main() {
    // ANCHOR: running_sum
    // Sums what it is sent, yielding the running total, until it is sent 0.
    let mut running_sum = Generator::new(|yielder, mut x: u64| {
        let mut total = 0;
        while x != 0 {
            total += x;
            x = yielder.suspend(total); // Python: x = yield total
        }
        format!("done at {total}")
    });
    for x in [5, 10, 0] {
        // Python: gen.send(x)
        match running_sum.resume(x) {
            GeneratorState::Yielded(total) => println!("sent {x}, got back {total}"),
            GeneratorState::Complete(message) => println!("sent {x}, it returned {message:?}"),
        }
    }
    // ANCHOR_END: running_sum
}
