//! What the io_uring test binaries share.

use stage4_async_await::{block_on, uring};

/// Why io_uring cannot run here (an old kernel, `kernel.io_uring_disabled`, a container's
/// seccomp filter), if it cannot: the tests that need it then skip, with that reason on
/// stderr (`-- --nocapture` shows it). Not on CI, which must run them: there a refusal
/// fails the test.
pub fn io_uring_refused() -> Option<String> {
    let error = block_on(async { uring::check() }).err()?;
    if std::env::var_os("CI").is_some() {
        panic!("CI must run the io_uring tests, but: {error}");
    }
    eprintln!("skipped: io_uring is refused here: {error}");
    Some(error.to_string())
}
