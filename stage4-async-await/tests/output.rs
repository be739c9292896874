//! What the binary says when things go wrong outside it: the report's stdout failing (a
//! closed pipe ends the output quietly, a full disk is one `error:` line and status 1),
//! and a command line it cannot use (status 2, as every usage error).

#[cfg(target_os = "linux")]
#[test]
fn a_lost_report_fails_and_a_closed_pipe_does_not() {
    shared::testkit::output::check_stdout_errors(
        env!("CARGO_BIN_EXE_stage4-async-await"),
        &["--requests", "2", "--delay-ms", "0"],
    );
}

#[test]
fn addresses_that_do_not_parse_or_resolve_are_usage_errors() {
    shared::testkit::output::check_usage_errors(
        env!("CARGO_BIN_EXE_stage4-async-await"),
        &[
            ["--addr", ":::"],
            ["--addr", "localhost:99999"],
            ["--addr", "no-port-here"],
            ["--requests", "0"],
        ],
    );
}
