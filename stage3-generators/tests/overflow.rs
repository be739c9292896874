//! A coroutine that overflows its stack must say so, not die with a bare SIGSEGV; one
//! that panics deep down must reach `resume`'s caller, backtrace printed.
//!
//! An overflow kills the process, so each test re-runs this test binary as a child with
//! `STAGE3_OVERFLOW` set; the child runs [`overflow_child`], and the parent checks the
//! child's output and the signal that ended it. Both kinds of guard page are covered.
//!
//! `cargo test -p stage3-generators --test overflow`
#![cfg(all(unix, not(miri)))]

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Command, Output};

use stage3_generators::generator::{Generator, Yielder};
use stage3_generators::stack::{self, Guard, Stack};

/// Uses about 1 KiB of stack per call, forever.
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0; // never: the stack runs out long before
    }
    let frame = black_box([depth as u8; 1024]);
    recurse(depth + 1) + frame[black_box(7)] as u64
}

/// About 1 KiB of stack per call (twice that in a debug build), `depth` calls deep,
/// then a panic.
fn panic_deep_down(depth: u64) -> u64 {
    if depth == 0 {
        panic!("deep panic");
    }
    let frame = black_box([depth as u8; 1024]);
    panic_deep_down(depth - 1) + frame[black_box(7)] as u64
}

#[test]
#[ignore = "the child process of the overflow tests; it crashes on purpose"]
fn overflow_child() {
    let Ok(mode) = std::env::var("STAGE3_OVERFLOW") else {
        return; // run by hand (`--include-ignored`): there is no parent to report to
    };
    if mode == "deep-panic" {
        let mut generator = Generator::new(|_: &Yielder<(), ()>, ()| {
            black_box(panic_deep_down(64));
        });
        let caught = panic::catch_unwind(AssertUnwindSafe(|| generator.resume(())));
        let message = caught.err().and_then(|p| p.downcast_ref::<&str>().copied());
        println!("resume's caller caught: {message:?}");
        return;
    }
    if mode == "probe-madvise" {
        // Does this system enforce the guard pages it accepts? Reading one must fault.
        let stack = Stack::take().unwrap();
        if stack.guard() == Guard::Madvise {
            // SAFETY: none wanted: the read must kill this child. If it does not, the
            // page was readable and the read harmless.
            let byte = unsafe { std::ptr::read_volatile(stack.guard_page().start as *const u8) };
            println!("madvise guard not enforced (read {byte})");
        } else {
            println!("no madvise guards here");
        }
        return;
    }
    if mode == "small" {
        // The size is the point here, not the guard: mprotect guards work everywhere,
        // qemu-user included.
        stack::force_mprotect_guards(true);
        let mut generator = Generator::with_stack_size(32 * 1024, |_: &Yielder<(), ()>, ()| {
            black_box(recurse(0));
        })
        .unwrap();
        generator.resume(());
        unreachable!("the overflow ended the process");
    }
    stack::force_mprotect_guards(mode == "mprotect");
    // Guard pages are installed several stacks at a time: with "later", the overflowing
    // stack is the eleventh handed out, in the middle of such a batch. Without its own
    // guard page, it would run on into the tenth stack, and fault on that one's guard.
    let held: Vec<Stack> = match mode.as_str() {
        "later" => (0..10).map(|_| Stack::take().unwrap()).collect(),
        _ => Vec::new(),
    };
    // The pool is LIFO: the generator below gets this very stack.
    let probe = Stack::take().unwrap();
    eprintln!("guard: {:?}", probe.guard());
    probe.give_back();
    let mut generator = Generator::new(|_: &Yielder<(), ()>, ()| {
        black_box(recurse(0));
    });
    generator.resume(());
    drop(held);
    unreachable!("the overflow ended the process");
}

fn child(mode: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["overflow_child", "--exact", "--ignored", "--nocapture"])
        .env("STAGE3_OVERFLOW", mode)
        .output()
        .unwrap()
}

/// How a guard-page fault ends a process: SIGSEGV on Linux, SIGBUS on macOS.
fn died_of_a_fault(output: &Output) -> bool {
    matches!(output.status.signal(), Some(libc::SIGSEGV | libc::SIGBUS))
}

fn overflow_in_child(mode: &str, stack_kib: usize) -> String {
    let output = child(mode);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        died_of_a_fault(&output),
        "the child should die of SIGSEGV or SIGBUS: {:?}\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains("fatal: coroutine stack overflow (fault at 0x"),
        "{stderr}"
    );
    assert!(stderr.contains("guard page 0x"), "{stderr}");
    let size = format!("the stack is {stack_kib} KiB");
    assert!(stderr.contains(&size), "{stderr}");
    stderr
}

#[test]
fn overflow_with_madvise_guard_pages_is_reported() {
    // NB: qemu-user (running an aarch64 build on x86_64, say) accepts MADV_GUARD_INSTALL
    // and ignores it; an overflow there writes over the next stack, silently. Detected by
    // reading a guard page in a child, not by looking for qemu.
    let probe = child("probe-madvise");
    let said = String::from_utf8_lossy(&probe.stdout);
    if said.contains("madvise guard not enforced") {
        eprintln!(
            "skipped: this system accepts MADV_GUARD_INSTALL but a guard page reads as \
             memory (qemu-user ignores the advice); the mprotect test below still runs"
        );
        return;
    }
    assert!(
        died_of_a_fault(&probe) || said.contains("no madvise guards here"),
        "{probe:?}"
    );
    let stderr = overflow_in_child("auto", stack::DEFAULT_STACK_SIZE / 1024);
    // Linux 6.13+ installs guards with madvise; older kernels fall back (tested below).
    assert!(
        stderr.contains("guard: Madvise") || stderr.contains("guard: Mprotect"),
        "{stderr}"
    );
}

#[test]
fn a_stack_in_the_middle_of_a_batch_of_guard_pages_has_its_own() {
    let probe = child("probe-madvise");
    if String::from_utf8_lossy(&probe.stdout).contains("madvise guard not enforced") {
        eprintln!("skipped: madvise guard pages are not enforced here (qemu-user)");
        return;
    }
    overflow_in_child("later", stack::DEFAULT_STACK_SIZE / 1024);
}

#[test]
fn overflow_with_mprotect_guard_pages_is_reported() {
    let stderr = overflow_in_child("mprotect", stack::DEFAULT_STACK_SIZE / 1024);
    assert!(stderr.contains("guard: Mprotect"), "{stderr}");
}

#[test]
fn overflow_of_a_smaller_stack_names_its_size() {
    overflow_in_child("small", 32);
}

/// A SIGSEGV that is not a coroutine overflow keeps its usual meaning.
#[test]
fn other_faults_are_not_called_overflows() {
    if std::env::var("STAGE3_NULL_CHILD").is_ok() {
        let _generator = Generator::new(|_: &Yielder<(), ()>, ()| ()); // installs the handler
        // SAFETY: none; this child is meant to crash on a null read.
        let value = unsafe { std::ptr::read_volatile(black_box(std::ptr::null::<u64>())) };
        eprintln!("read {value}");
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "other_faults_are_not_called_overflows",
            "--exact",
            "--nocapture",
        ])
        .env("STAGE3_NULL_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(died_of_a_fault(&output), "{stderr}");
    assert!(!stderr.contains("coroutine stack overflow"), "{stderr}");
}

/// Printing a backtrace takes about 20 KiB of stack: a panic deep in a body must still
/// reach `resume`'s caller, not end in an overflow.
#[test]
fn a_panic_deep_in_a_coroutine_prints_its_backtrace_and_reaches_resume() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["overflow_child", "--exact", "--ignored", "--nocapture"])
        .env("STAGE3_OVERFLOW", "deep-panic")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{:?}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("resume's caller caught: Some(\"deep panic\")"),
        "{stdout}"
    );
    assert!(stderr.contains("stack backtrace:"), "{stderr}");
    assert!(stderr.contains("panic_deep_down"), "{stderr}");
}
