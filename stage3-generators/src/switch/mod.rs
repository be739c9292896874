//! The context switch: save the callee-saved registers of one stack, load another's.
//!
//! One file per architecture, selected by `cfg`, each with the same two items:
//! - `switch(save, to, message)`: stores the stack pointer in `*save`, loads `to` as the
//!   stack pointer and continues where that stack left off, handing it `message`, one
//!   word in a register; returns the word the next switch back here hands us. It is an
//!   `asm!` block that jumps to a naked function: the block declares every register the
//!   compiler may name as clobbered, so the compiler saves only the callee-saved values
//!   it still needs, and the naked function saves the few LLVM reserves and the block
//!   cannot name (`rbx` and `rbp`; x19, x29 and x30 on aarch64).
//! - `init(top, entry, arg)`: lays out a fresh stack so that the first `switch` to it
//!   calls `entry(arg, message)`.
//!
//! The System V calling conventions are assumed (Linux, macOS, the BSDs); Windows saves
//! more registers (xmm6 to xmm15 on x86_64) and is refused below.
//!
//! `cargo bench -p stage3-generators --bench switch` measures it.

/// A saved stack pointer: where `switch` left the registers of a suspended stack.
pub(crate) type StackPointer = *mut u8;

/// The first function a fresh stack runs. It must never return: there is nothing below
/// it on the stack to return to.
pub(crate) type Entry = extern "C" fn(arg: *mut u8, message: usize) -> !;

#[cfg(all(target_arch = "x86_64", unix))]
mod x86_64;
#[cfg(all(target_arch = "x86_64", unix))]
pub(crate) use x86_64::{init, switch};

#[cfg(all(target_arch = "aarch64", unix))]
mod aarch64;
#[cfg(all(target_arch = "aarch64", unix))]
pub(crate) use aarch64::{init, switch};

#[cfg(not(all(any(target_arch = "x86_64", target_arch = "aarch64"), unix)))]
compile_error!(
    "stage3-generators has a context switch for x86_64 and aarch64 on Unix only \
     (System V calling convention); other targets need their own src/switch/<arch>.rs"
);
