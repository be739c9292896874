//! What several of stage 3's test files use.

// Each test file is its own crate and uses only part of this.
#![allow(dead_code)]

use std::cell::Cell;
use std::rc::Rc;

use stage3_generators::stack::Stack;

/// Counts its drops, like a socket that must be closed.
pub struct Noisy(pub Rc<Cell<u32>>);

impl Drop for Noisy {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Whether `address` lies on `stack`, between its guard page and its top.
pub fn holds(stack: &Stack, address: usize) -> bool {
    let top = stack.top() as usize;
    (top - stack.size()..top).contains(&address)
}
