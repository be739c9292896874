//! The OS layer by hand (article section 2.2): readiness loops written directly on libc.
//!
//! Both modules serve the echo protocol of section 3.2 (every byte a client sends comes
//! back) from one thread, and differ only in how they ask the kernel what is ready:
//! [`select`] hands over the whole set of descriptors on every call, [`epoll`] registers
//! each one once and gets back only the ready ones.

pub mod select;

#[cfg(target_os = "linux")]
pub mod epoll;
