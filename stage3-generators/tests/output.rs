//! What the binary says when things go wrong outside it: the report's stdout failing (a
//! closed pipe ends the output quietly, a full disk is one `error:` line and status 1),
//! and a command line it cannot use (status 2, as every usage error).

shared::output_tests!(env!("CARGO_BIN_EXE_stage3-generators"));
