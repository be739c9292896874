//! The bench binaries' stdout failing: a closed pipe ends the output quietly, a full
//! disk is one `error:` line and exit status 1, whether or not their `main` ends in
//! `shared::cli::exit` (`compute`'s does not).

#[cfg(target_os = "linux")]
#[test]
fn a_lost_table_fails_and_a_closed_pipe_does_not() {
    shared::testkit::output::check_stdout_errors(
        env!("CARGO_BIN_EXE_compute"),
        &["--runs", "1", "--jobs", "4", "--job-ms", "1"],
    );
}
