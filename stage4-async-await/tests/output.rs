//! The report's stdout failing: a closed pipe ends the output quietly, a full disk is
//! one `error:` line and exit status 1.

#[cfg(target_os = "linux")]
#[test]
fn a_lost_report_fails_and_a_closed_pipe_does_not() {
    shared::testkit::output::check_stdout_errors(
        env!("CARGO_BIN_EXE_stage4-async-await"),
        &["--requests", "2", "--delay-ms", "0"],
    );
}
