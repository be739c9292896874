//! One name for "this OS has kqueue": `#[cfg(kqueue)]` in the crate, its tests and its
//! examples, instead of the same list of five systems in each place.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kqueue)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // The systems whose kevent(2) the `libc` crate describes, and that mio runs on.
    if ["macos", "freebsd", "netbsd", "openbsd", "dragonfly"].contains(&os.as_str()) {
        println!("cargo::rustc-cfg=kqueue");
    }
}
