//! Dropping a suspended generator unwinds its stack (Python: `gen.close()`). A body can
//! catch that unwind (`catch_unwind` is safe), so these are the ways it can misbehave,
//! and what the generator does about each. The misbehaving bodies run in a child process
//! (this test binary again, with `STAGE3_CANCEL` set) because some of them must end it.
//!
//! `cargo test -p stage3-generators --test cancel`
#![cfg(not(miri))]

use std::hint::black_box;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Command, Output};
use std::sync::mpsc;

use stage3_generators::generator::{Generator, GeneratorState, Yielder};
use stage3_generators::stack::Stack;

#[test]
#[ignore = "the child process of the cancel tests; some of its modes abort on purpose"]
fn cancel_child() {
    let Ok(mode) = std::env::var("STAGE3_CANCEL") else {
        return; // run by hand (`--include-ignored`): there is no parent to report to
    };
    match mode.as_str() {
        "suspend-again" => suspend_again(),
        "suspend-while-panicking" => suspend_while_panicking(),
        "suspend-in-a-destructor-while-cancelled" => suspend_in_a_destructor_while_cancelled(),
        other => panic!("unknown mode {other}"),
    }
}

/// The outside review's reproduction: a scoped thread borrows an array on the coroutine
/// stack, the body catches the cancelling unwind and suspends again, and the next
/// generator would get the same stack.
fn suspend_again() {
    let (go, wait) = mpsc::channel::<()>();
    let (tell, told) = mpsc::channel::<bool>();
    let mut generator = Generator::new(move |yielder: &Yielder<(), usize>, ()| {
        let data = [0xA5u8; 2048];
        std::thread::scope(|scope| {
            let data = &data;
            scope.spawn(move || {
                let _ = wait.recv();
                let _ = tell.send(data.iter().all(|&byte| byte == 0xA5));
            });
            let address = data.as_ptr() as usize;
            let caught = panic::catch_unwind(AssertUnwindSafe(|| yielder.suspend(address)));
            println!("body caught the cancel: {}", caught.is_err());
            yielder.suspend(0); // suspends while being dropped
            unreachable!("never resumed again");
        });
    });
    let GeneratorState::Yielded(address) = generator.resume(()) else {
        panic!("the body suspends first");
    };
    drop(generator);
    // The pool is LIFO: were the stack given back, this generator would scribble on it.
    let mut next = Generator::new(|_: &Yielder<(), ()>, ()| {
        let scribble = black_box([0x5Au8; 16 * 1024]);
        black_box(&scribble);
    });
    assert_eq!(next.resume(()), GeneratorState::Complete(()));
    go.send(()).unwrap();
    println!("borrowed array intact: {}", told.recv().unwrap());
    let fresh = Stack::take().unwrap();
    let range = fresh.top() as usize - fresh.size()..fresh.top() as usize;
    println!("stack reused: {}", range.contains(&address));
}

/// A destructor that suspends: harmless on a normal return, not during an unwind.
struct SuspendOnDrop<'a>(&'a Yielder<(), u8>);
impl Drop for SuspendOnDrop<'_> {
    fn drop(&mut self) {
        self.0.suspend(2);
    }
}

fn suspend_while_panicking() {
    let mut generator = Generator::new(|yielder: &Yielder<(), u8>, ()| {
        let _guard = SuspendOnDrop(yielder);
        panic!("boom");
    });
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| generator.resume(())));
    println!("resume returned: {:?}", outcome.map_err(|_| "a panic"));
    drop(generator);
    println!("the caller carried on");
}

fn suspend_in_a_destructor_while_cancelled() {
    let mut generator = Generator::new(|yielder: &Yielder<(), u8>, ()| {
        let _guard = SuspendOnDrop(yielder);
        yielder.suspend(1);
    });
    assert_eq!(generator.resume(()), GeneratorState::Yielded(1));
    drop(generator);
    println!("the caller carried on");
}

fn child(mode: &str) -> (Output, String, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["cancel_child", "--exact", "--ignored", "--nocapture"])
        .env("STAGE3_CANCEL", mode)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

#[test]
fn a_body_that_suspends_while_dropped_keeps_its_stack_for_good() {
    let (output, stdout, stderr) = child("suspend-again");
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("body caught the cancel: true"), "{stdout}");
    assert!(
        stdout.contains("borrowed array intact: true"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("stack reused: false"), "{stdout}");
    assert!(
        stderr.contains("warning: a generator caught the unwind that drops it and suspended again"),
        "{stderr}"
    );
    assert!(stderr.contains("leaked, never reused"), "{stderr}");
}

/// The message a misbehaving body gets before the process aborts.
const ABORT: &str = "fatal: a generator called `suspend` while its stack was unwinding";

fn assert_aborts(mode: &str) {
    let (output, stdout, stderr) = child(mode);
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            output.status.signal(),
            Some(libc::SIGABRT),
            "{:?}\n{stdout}\n{stderr}",
            output.status
        );
    }
    assert!(stderr.contains(ABORT), "{stdout}\n{stderr}");
    assert!(!stdout.contains("the caller carried on"), "{stdout}");
}

#[test]
fn suspending_from_a_destructor_during_a_panic_aborts_with_a_message() {
    assert_aborts("suspend-while-panicking");
}

#[test]
fn suspending_from_a_destructor_while_dropped_aborts_with_a_message() {
    assert_aborts("suspend-in-a-destructor-while-cancelled");
}
