//! The generator's `resume` and `suspend` (Python's `send` and `yield`): values in both
//! directions, a panic that crosses to the caller, suspending from deep down, generators
//! inside generators, thousands at once, and the stack each one runs on. What dropping
//! one does is in `tests/drop.rs`; bodies that misbehave when dropped, in
//! `tests/cancel.rs`.
//!
//! `cargo test -p stage3-generators --test generator`
// Miri cannot run the context switch's inline assembly.
#![cfg(not(miri))]

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::rc::Rc;

use stage3_generators::generator::{Generator, GeneratorState, Yielder};
use stage3_generators::stack::{self, DEFAULT_STACK_SIZE, Stack};

mod common;

use common::holds;

#[test]
fn values_go_in_and_out() {
    let mut echo = Generator::new(|yielder, first: String| {
        let mut seen = vec![first];
        for i in 0..3 {
            seen.push(yielder.suspend(i));
        }
        seen
    });
    assert_eq!(echo.resume("a".into()), GeneratorState::Yielded(0));
    assert_eq!(echo.resume("b".into()), GeneratorState::Yielded(1));
    assert_eq!(echo.resume("c".into()), GeneratorState::Yielded(2));
    assert!(!echo.is_complete());
    assert_eq!(
        echo.resume("d".into()),
        GeneratorState::Complete(vec!["a".into(), "b".into(), "c".into(), "d".into()])
    );
    assert!(echo.is_complete());
}

#[test]
#[should_panic(expected = "resumed a generator that has completed")]
fn resuming_a_completed_generator_panics() {
    let mut once = Generator::new(|_: &Yielder<(), ()>, ()| 1);
    assert_eq!(once.resume(()), GeneratorState::Complete(1));
    once.resume(());
}

#[test]
fn a_panic_crosses_resume_to_the_caller() {
    let mut faulty = Generator::new(|yielder: &Yielder<(), u8>, ()| {
        yielder.suspend(1);
        panic!("boom inside the generator");
    });
    assert_eq!(faulty.resume(()), GeneratorState::Yielded(1));
    let payload = panic::catch_unwind(AssertUnwindSafe(|| faulty.resume(()))).unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"boom inside the generator")
    );
    assert!(faulty.is_complete());
    // The thread is fine afterwards, and so are new generators.
    let mut next = Generator::new(|_: &Yielder<(), ()>, ()| 7);
    assert_eq!(next.resume(()), GeneratorState::Complete(7));
}

fn countdown(yielder: &Yielder<(), u32>, depth: u32) {
    if depth == 0 {
        yielder.suspend(0);
    } else {
        countdown(yielder, depth - 1);
        yielder.suspend(depth);
    }
}

#[test]
fn suspends_from_several_frames_deep() {
    // Python would need `yield from` at every level; here it is a plain call.
    let mut generator = Generator::new(|yielder, ()| countdown(yielder, 20));
    for expected in 0..=20 {
        assert_eq!(generator.resume(()), GeneratorState::Yielded(expected));
    }
    assert_eq!(generator.resume(()), GeneratorState::Complete(()));
}

#[test]
fn generators_nest() {
    let mut outer = Generator::new(|yielder: &Yielder<(), u32>, ()| {
        let mut inner = Generator::new(|inner_yielder: &Yielder<(), u32>, ()| {
            inner_yielder.suspend(1);
            2
        });
        while let GeneratorState::Yielded(x) = inner.resume(()) {
            yielder.suspend(x * 10);
        }
        yielder.suspend(99);
    });
    assert_eq!(outer.resume(()), GeneratorState::Yielded(10));
    assert_eq!(outer.resume(()), GeneratorState::Yielded(99));
    assert_eq!(outer.resume(()), GeneratorState::Complete(()));
}

#[test]
fn thousands_of_live_generators() {
    let mut generators: Vec<Generator<u64, u64, u64>> = (0..5_000)
        .map(|i| {
            Generator::new(move |yielder, x| {
                let y = yielder.suspend(x + i);
                x + y + i
            })
        })
        .collect();
    for (i, generator) in generators.iter_mut().enumerate() {
        assert_eq!(generator.resume(1), GeneratorState::Yielded(1 + i as u64));
    }
    // All 5,000 are suspended at once, each on its own stack; finish them backwards.
    for (i, generator) in generators.iter_mut().enumerate().rev() {
        assert_eq!(generator.resume(2), GeneratorState::Complete(3 + i as u64));
    }
}

#[test]
fn floating_point_state_survives_switches() {
    let mut generator = Generator::new(|yielder: &Yielder<f64, f64>, x: f64| {
        let kept = x * 1.5;
        let y = yielder.suspend(kept);
        kept + y
    });
    assert_eq!(generator.resume(2.0), GeneratorState::Yielded(3.0));
    let noise: f64 = std::hint::black_box(0.25) * 8.0;
    assert_eq!(generator.resume(noise), GeneratorState::Complete(5.0));
}

#[test]
fn a_generator_gets_the_stack_size_it_asks_for_in_whole_pages() {
    let page = stack::page_size();
    let address = Rc::new(Cell::new(0));
    let at = address.clone();
    let mut small = Generator::with_stack_size(20_000, move |_: &Yielder<(), ()>, ()| {
        let here = 3;
        at.set(ptr::from_ref(&here).addr());
        here
    })
    .unwrap();
    assert_eq!(small.resume(()), GeneratorState::Complete(3));
    // Its stack went back to the pool for its size, which hands it out next.
    let stack = Stack::take_sized(20_000).unwrap();
    assert_eq!(stack.size(), 20_000usize.next_multiple_of(page));
    assert!(holds(&stack, address.get()), "the body ran on that stack");
    stack.give_back();

    let at = address.clone();
    let mut default = Generator::new(move |_: &Yielder<(), ()>, ()| {
        let here = 0u8; // a local: it lives on the generator's stack
        at.set(ptr::from_ref(&here).addr());
    });
    assert_eq!(default.resume(()), GeneratorState::Complete(()));
    let stack = Stack::take().unwrap();
    assert_eq!(stack.size(), DEFAULT_STACK_SIZE);
    assert!(holds(&stack, address.get()), "the body ran on that stack");
    stack.give_back();

    for bad in [0, 1024, usize::MAX] {
        let error = Generator::with_stack_size(bad, |_: &Yielder<(), ()>, ()| ())
            .err()
            .unwrap();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{bad}");
        assert!(error.to_string().contains("16 KiB to 1024 MiB"), "{error}");
    }
}
