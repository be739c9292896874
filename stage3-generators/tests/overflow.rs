//! A coroutine that overflows its stack must say so, not die with a bare SIGSEGV.
//!
//! The overflow kills the process, so each test re-runs this test binary as a child with
//! `STAGE3_OVERFLOW` set; the child runs [`overflow_child`], which overflows, and the
//! parent checks the child's stderr and the signal that ended it. Both kinds of guard
//! page are covered.
//!
//! `cargo test -p stage3-generators --test overflow`
#![cfg(all(target_os = "linux", not(miri)))]

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use stage3_generators::generator::{Generator, Yielder};
use stage3_generators::stack::{self, Stack};

/// Uses about 1 KiB of stack per call, forever.
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0; // never: the stack runs out long before
    }
    let frame = black_box([depth as u8; 1024]);
    recurse(depth + 1) + frame[black_box(7)] as u64
}

#[test]
#[ignore = "the child process of the overflow tests; it crashes on purpose"]
fn overflow_child() {
    let Ok(mode) = std::env::var("STAGE3_OVERFLOW") else {
        return; // run by hand (`--include-ignored`): there is no parent to report to
    };
    stack::force_mprotect_guards(mode == "mprotect");
    // The pool is LIFO: the generator below gets this very stack.
    let probe = Stack::take().unwrap();
    eprintln!("guard: {:?}", probe.guard());
    probe.give_back();
    let mut generator = Generator::new(|_: &Yielder<(), ()>, ()| {
        black_box(recurse(0));
    });
    generator.resume(());
    unreachable!("the overflow ended the process");
}

fn overflow_in_child(mode: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["overflow_child", "--exact", "--ignored", "--nocapture"])
        .env("STAGE3_OVERFLOW", mode)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGSEGV),
        "the child should die of SIGSEGV: {:?}\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains("fatal: coroutine stack overflow (fault at 0x"),
        "{stderr}"
    );
    assert!(stderr.contains("guard page 0x"), "{stderr}");
    stderr
}

#[test]
fn overflow_with_madvise_guard_pages_is_reported() {
    let stderr = overflow_in_child("auto");
    // Linux 6.13+ installs guards with madvise; older kernels fall back (tested below).
    assert!(
        stderr.contains("guard: Madvise") || stderr.contains("guard: Mprotect"),
        "{stderr}"
    );
}

#[test]
fn overflow_with_mprotect_guard_pages_is_reported() {
    let stderr = overflow_in_child("mprotect");
    assert!(stderr.contains("guard: Mprotect"), "{stderr}");
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
    assert_eq!(output.status.signal(), Some(libc::SIGSEGV), "{stderr}");
    assert!(!stderr.contains("coroutine stack overflow"), "{stderr}");
}
