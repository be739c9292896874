//! Every coroutine stack reserves its full size in address space, touched or not, so a
//! process under `ulimit -v` (RLIMIT_AS) runs out of it long before it runs out of
//! memory. That must be a clear error from `Task::spawn`, not a crash.
//!
//! The limit applies to the whole process, so the test runs in a child process (this test
//! binary again, with `STAGE3_ADDRESS_SPACE` set).
//!
//! `cargo test -p stage3-generators --test address_space`
#![cfg(all(target_os = "linux", not(miri)))]

use std::process::Command;

use stage3_generators::event_loop::EventLoop;
use stage3_generators::task::Task;

#[test]
#[ignore = "the child process of the address-space test"]
fn address_space_child() {
    if std::env::var("STAGE3_ADDRESS_SPACE").is_err() {
        return; // run by hand: no parent to report to
    }
    let event_loop = EventLoop::new(false).unwrap();
    let limit = libc::rlimit {
        rlim_cur: 4 << 30,
        rlim_max: 4 << 30,
    };
    // SAFETY: a valid `rlimit` for this process; lowering a limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
    if limit_is_not_enforced() {
        // NB: qemu-user takes `setrlimit(RLIMIT_AS)` and ignores it, since the limit
        // would apply to the emulator's own memory too.
        println!("skipped: the address-space limit is not enforced here (qemu-user ignores it)");
        return;
    }
    let mut tasks = Vec::new();
    // 4 GiB hold at most about 16,000 stacks of 256 KiB; 100,000 cannot fit.
    for i in 0..100_000 {
        match Task::spawn(&event_loop, "idle", |_| ()) {
            Ok(task) => tasks.push(task),
            Err(error) => {
                println!("spawned {i}, then: {error}");
                event_loop.close();
                return;
            }
        }
    }
    println!("all 100000 spawned under a 4 GiB address-space limit");
}

/// Whether a reservation larger than the whole 4 GiB limit still succeeds.
fn limit_is_not_enforced() -> bool {
    let len = 5usize << 30;
    // SAFETY: a fresh private anonymous reservation with no access; it is unmapped at
    // once if it was made, and no pointer into it is kept.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return false;
        }
        libc::munmap(p, len);
    }
    true
}

#[test]
fn running_out_of_address_space_is_a_clear_error() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["address_space_child", "--exact", "--ignored", "--nocapture"])
        .env("STAGE3_ADDRESS_SPACE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    if let Some(reason) = stdout.lines().find(|line| line.starts_with("skipped: ")) {
        eprintln!("{reason}");
        return;
    }
    assert!(
        stdout.contains("then: one more coroutine stack, more than"),
        "{stdout}"
    );
    assert!(stdout.contains("no address space left for"), "{stdout}");
    assert!(stdout.contains("raise `ulimit -v`"), "{stdout}");
}
