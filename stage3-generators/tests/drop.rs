//! Dropping a generator (Python: `gen.close()`): every value that crossed a switch, and
//! every local of a suspended or unstarted body, is dropped exactly once, and the stack
//! goes back to the pool. What happens to a body that misbehaves when dropped (suspends
//! again, suspends while unwinding) is in `tests/cancel.rs`.
//!
//! `cargo test -p stage3-generators --test drop`
// Miri cannot run the context switch's inline assembly.
#![cfg(not(miri))]

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::rc::Rc;

use stage3_generators::generator::{Generator, GeneratorState, Yielder};
use stage3_generators::stack::Stack;

mod common;

use common::{Noisy, holds};

#[test]
fn values_in_a_register_and_values_by_address_are_each_dropped_once() {
    let drops = Rc::new(Cell::new(0));
    // One `Noisy` is one word (an `Rc`): it crosses the switch in the register. Three
    // do not fit: they cross as the address of the array on the body's stack.
    let mut generator = Generator::new(|yielder: &Yielder<Noisy, [Noisy; 3]>, a: Noisy| {
        let (b, c) = (Noisy(a.0.clone()), Noisy(a.0.clone()));
        yielder.suspend([a, b, c])
    });
    let GeneratorState::Yielded(three) = generator.resume(Noisy(drops.clone())) else {
        panic!("the body suspends first");
    };
    assert_eq!(drops.get(), 0);
    drop(three);
    assert_eq!(drops.get(), 3);
    let GeneratorState::Complete(last) = generator.resume(Noisy(drops.clone())) else {
        panic!("the body returns what it was sent");
    };
    assert_eq!(drops.get(), 3);
    drop(last);
    assert_eq!(drops.get(), 4);
    assert_eq!(Rc::strong_count(&drops), 1, "no value was leaked");
}

#[test]
fn dropping_a_suspended_generator_runs_its_destructors() {
    let drops = Rc::new(Cell::new(0));
    let (outer, inner) = (Noisy(drops.clone()), Noisy(drops.clone()));
    let after_suspend = Rc::new(Cell::new(false));
    let reached = after_suspend.clone();
    let mut generator = Generator::new(move |yielder: &Yielder<(), ()>, ()| {
        let _outer = outer;
        let nested = || {
            let _inner = inner;
            yielder.suspend(());
            reached.set(true); // never: the generator is dropped while suspended
        };
        nested();
    });
    assert_eq!(generator.resume(()), GeneratorState::Yielded(()));
    assert_eq!(drops.get(), 0);
    drop(generator);
    assert_eq!(drops.get(), 2, "both locals of the suspended stack dropped");
    assert!(!after_suspend.get());
}

#[test]
fn a_suspended_generator_dropped_during_a_panic_still_unwinds() {
    let drops = Rc::new(Cell::new(0));
    let noisy = Noisy(drops.clone());
    let payload = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut generator = Generator::new(move |yielder: &Yielder<(), ()>, ()| {
            let _noisy = noisy;
            yielder.suspend(());
        });
        generator.resume(());
        panic!("the caller fails while the generator is suspended");
    }))
    .unwrap_err();
    assert_eq!(drops.get(), 1, "the generator's stack was unwound too");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"the caller fails while the generator is suspended")
    );
}

#[test]
fn dropping_an_unstarted_generator_drops_its_body() {
    let drops = Rc::new(Cell::new(0));
    let noisy = Noisy(drops.clone());
    let generator = Generator::new(move |_: &Yielder<(), ()>, ()| drop(noisy));
    drop(generator);
    assert_eq!(drops.get(), 1);
}

#[test]
fn bodies_of_every_size_and_alignment_run_and_drop_once() {
    #[repr(align(32))]
    struct Aligned(u8);
    #[repr(align(256))]
    struct VeryAligned(u8);
    let drops = Rc::new(Cell::new(0));
    // On the stack: small, and over-aligned. On the heap: too big, too aligned.
    let small = Noisy(drops.clone());
    let over_aligned = (Noisy(drops.clone()), Aligned(7));
    let big = (Noisy(drops.clone()), [3u8; 4096]);
    let drops_e = drops.clone();
    let huge_alignment = (Noisy(drops.clone()), VeryAligned(9));
    let mut a = Generator::new(move |y: &Yielder<(), usize>, ()| y.suspend(small.0.get() as usize));
    let mut b = Generator::new(move |y: &Yielder<(), usize>, ()| {
        let over_aligned = over_aligned; // the whole tuple, not only the field used
        assert_eq!(std::ptr::from_ref(&over_aligned.1) as usize % 32, 0);
        y.suspend(over_aligned.1.0 as usize)
    });
    let mut c = Generator::new(move |y: &Yielder<(), usize>, ()| {
        let big = big;
        y.suspend(big.1.iter().map(|&b| b as usize).sum())
    });
    assert_eq!(a.resume(()), GeneratorState::Yielded(0));
    assert_eq!(b.resume(()), GeneratorState::Yielded(7));
    assert_eq!(c.resume(()), GeneratorState::Yielded(3 * 4096));
    assert_eq!(drops.get(), 0);
    drop((a, b, c));
    assert_eq!(
        drops.get(),
        3,
        "each body dropped once, with its stack unwound"
    );
    let mut d = Generator::new(move |_: &Yielder<(), ()>, ()| {
        let huge_alignment = huge_alignment;
        assert_eq!(std::ptr::from_ref(&huge_alignment.1) as usize % 256, 0);
        assert_eq!(huge_alignment.1.0, 9);
    });
    assert_eq!(d.resume(()), GeneratorState::Complete(()));
    let e = Generator::new(move |_: &Yielder<(), ()>, ()| drop(Noisy(drops_e)));
    drop(e);
    assert_eq!(drops.get(), 4, "an unstarted body is dropped unrun");
    assert_eq!(Rc::strong_count(&drops), 1, "nothing leaked");
}

#[test]
fn an_unstarted_body_whose_drop_panics_passes_the_panic_on() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("the body's destructor panics");
        }
    }
    let guard = PanicOnDrop;
    let generator = Generator::new(move |_: &Yielder<(), ()>, ()| drop(guard));
    let payload = panic::catch_unwind(AssertUnwindSafe(|| drop(generator))).unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"the body's destructor panics")
    );
    // Its stack went back to the pool, and the next generator runs on it.
    let mut next = Generator::new(|_: &Yielder<(), ()>, ()| 5);
    assert_eq!(next.resume(()), GeneratorState::Complete(5));
}

#[test]
fn a_body_that_catches_the_cancel_and_returns_is_done_and_its_stack_reused() {
    let drops = Rc::new(Cell::new(0));
    let noisy = Noisy(drops.clone());
    let caught = Rc::new(Cell::new(false));
    let seen = caught.clone();
    let address = Rc::new(Cell::new(0));
    let at = address.clone();
    let mut generator = Generator::new(move |yielder: &Yielder<(), ()>, ()| {
        let _noisy = noisy;
        at.set(ptr::from_ref(&_noisy).addr());
        let cancel = panic::catch_unwind(AssertUnwindSafe(|| yielder.suspend(())));
        seen.set(cancel.is_err());
        "returned anyway"
    });
    assert_eq!(generator.resume(()), GeneratorState::Yielded(()));
    drop(generator);
    assert!(caught.get(), "the body saw the cancelling unwind");
    assert_eq!(drops.get(), 1);
    // Its stack was unwound to the root, so the pool hands it out again.
    let next = Stack::take().unwrap();
    assert!(
        holds(&next, address.get()),
        "the next stack is the one it ran on"
    );
    next.give_back();
}

#[test]
fn a_destructor_may_suspend_when_no_unwind_is_running() {
    struct SuspendOnDrop<'a>(&'a Yielder<(), u8>);
    impl Drop for SuspendOnDrop<'_> {
        fn drop(&mut self) {
            self.0.suspend(2);
        }
    }
    let mut generator = Generator::new(|yielder: &Yielder<(), u8>, ()| {
        let _guard = SuspendOnDrop(yielder);
        yielder.suspend(1);
        "done"
    });
    assert_eq!(generator.resume(()), GeneratorState::Yielded(1));
    assert_eq!(generator.resume(()), GeneratorState::Yielded(2));
    assert_eq!(generator.resume(()), GeneratorState::Complete("done"));
}
