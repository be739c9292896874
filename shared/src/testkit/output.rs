//! What every binary must do when its stdout fails (a closed pipe ends the output
//! quietly, any other error is one `error:` line and a failure), and when its command
//! line is wrong (status 2, as clap's usage errors). Each crate's tests call
//! [`check_stdout_errors`] and [`check_usage_errors`] on its binaries; a stage's binary
//! gets both, with the arguments every stage takes, from
//! [`output_tests!`](crate::output_tests).

use std::process::{Command, Stdio};

/// Runs `binary args` twice and checks both ends of [`say!`](crate::say)'s contract:
///
/// - stdout on `/dev/full` (every write fails with `ENOSPC`): exit status 1, and stderr
///   holds exactly one `error: writing the report to stdout: ...` line;
/// - stdout into a pipe whose reader has gone (as with `| head`): exit status 0, and no
///   error or panic on stderr.
///
/// `binary` must end on its own with these arguments. Linux only: `/dev/full` is
/// Linux's.
#[cfg(target_os = "linux")]
pub fn check_stdout_errors(binary: &str, args: &[&str]) {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let output = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(full)
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "> /dev/full: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        errors,
        ["error: writing the report to stdout: No space left on device (os error 28)"],
        "> /dev/full: {stderr}"
    );

    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the binary");
    drop(child.stdout.take()); // the reader leaves before the first line
    let output = child.wait_with_output().expect("wait for the binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "| (closed): {stderr}");
    assert!(
        !stderr.contains("error") && !stderr.contains("panicked"),
        "| (closed): {stderr}"
    );
}

/// Runs `binary` with each of `cases` (a flag and its bad value), and checks that each is
/// a usage error: exit status 2, as clap gives, and an `error:` on stderr that names
/// the flag. Addresses that do not parse or resolve (`--addr :::`, `--addr
/// localhost:99999`) belong here too.
pub fn check_usage_errors(binary: &str, cases: &[[&str; 2]]) {
    for args in cases {
        let output = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run the binary");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains(args[0]),
            "{args:?} names the flag: {stderr}"
        );
    }
}

/// Defines the two output tests every stage's binary keeps, for the binary at `$binary`
/// (`env!("CARGO_BIN_EXE_<name>")`): `a_lost_report_fails_and_a_closed_pipe_does_not`
/// (Linux), with a short run of two requests, and
/// `addresses_that_do_not_parse_or_resolve_are_usage_errors`.
#[macro_export]
macro_rules! output_tests {
    ($binary:expr) => {
        #[cfg(target_os = "linux")]
        #[test]
        fn a_lost_report_fails_and_a_closed_pipe_does_not() {
            $crate::testkit::output::check_stdout_errors(
                $binary,
                &["--requests", "2", "--delay-ms", "0"],
            );
        }

        #[test]
        fn addresses_that_do_not_parse_or_resolve_are_usage_errors() {
            $crate::testkit::output::check_usage_errors(
                $binary,
                &[
                    ["--addr", ":::"],
                    ["--addr", "localhost:99999"],
                    ["--addr", "no-port-here"],
                    ["--requests", "0"],
                ],
            );
        }
    };
}
