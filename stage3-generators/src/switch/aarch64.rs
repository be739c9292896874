//! The aarch64 context switch (AAPCS64): x19 to x28, the frame pointer x29, the link
//! register x30, the stack pointer, and the low halves d8 to d15 of v8 to v15, most of
//! them saved by the compiler around `switch`'s `asm!` block, only where needed.
//!
//! x18 is the platform register (reserved on macOS, a shadow call stack elsewhere): we
//! leave it alone. Read `x86_64.rs` first: this is the same switch for another
//! instruction set.
//!
//! `tests/aarch64-switch/run.sh` runs these exact instructions under `qemu-aarch64`, so
//! they can be checked on an x86_64 machine without Rust's aarch64 standard library.

use super::{Entry, StackPointer};

/// Bytes `switch_stacks` stores on the stack: x19, x29 and x30, padded to 32 bytes
/// because `sp` must stay a multiple of 16.
const FRAME: usize = 32;

// ANCHOR: switch
/// Saves the current stack, continues the stack saved in `to`, and hands it `message`;
/// returns the message passed by whichever stack switches back to `*save`.
///
/// As on x86_64, the `asm!` block declares every register clobbered except the ones
/// LLVM reserves (x19, the frame pointer x29, and x18, the platform register, which we
/// leave alone), so the compiler saves only what it still needs, d8 to d15 included
/// (`clobber_abi("C")` clobbers all of v0 to v31). [`switch_stacks`] saves the rest:
/// x19, x29 and the address to come back to, x30. `message` rides in x2.
///
/// As on x86_64, the block sets x30 itself and branches with `b`, not `bl`: the return
/// predictor pushes an entry on every `bl`, and no `ret` would ever pop this one.
///
/// # Safety
///
/// `save` must be valid for a write, and `to` must be a stack pointer stored by an
/// earlier `switch` (or made by [`init`]) whose stack is still alive and not running.
#[inline(always)]
pub(crate) unsafe fn switch(save: *mut StackPointer, to: StackPointer, message: usize) -> usize {
    let received;
    // SAFETY: the caller upholds `switch_stacks`' contract; the clobbers below are every
    // register the other stack may change, so the compiler keeps nothing in them.
    unsafe {
        core::arch::asm!(
            "adr x30, 2f", // where the other stack comes back to: label 2
            "b {switch_stacks}",
            "2:",
            switch_stacks = sym switch_stacks,
            in("x0") save,
            in("x1") to,
            inlateout("x2") message => received,
            out("x20") _,
            out("x21") _,
            out("x22") _,
            out("x23") _,
            out("x24") _,
            out("x25") _,
            out("x26") _,
            out("x27") _,
            out("x28") _,
            clobber_abi("C"),
        )
    };
    received
}

/// Stores x19, x29 and x30 on the current stack, stores the stack pointer in `*x0`,
/// loads `x1` as the stack pointer, loads that stack's three registers and branches to
/// its x30.
///
/// Ends with `br x30` rather than `ret`, for the same reason as on x86_64: the return
/// predictor would expect the caller of this call, and a switch never goes back there.
/// Its eight instructions fill one 32-byte-aligned block, so the branch never straddles a
/// 64-byte line (which cost up to 1.6 ns a round trip on x86_64; not measured here).
///
/// NB: like the x86_64 switch, it does not save the floating-point control register
/// (FPCR): Rust code never changes it.
///
/// # Safety
///
/// Only for [`switch`]'s `asm!` block, which declares what it clobbers.
#[unsafe(naked)]
unsafe extern "C" fn switch_stacks() {
    core::arch::naked_asm!(
        ".p2align 5",
        "stp x19, x29, [sp, #-32]!",
        "str x30, [sp, #16]",
        "mov x9, sp",
        "str x9, [x0]", // *save = sp
        "mov sp, x1",   // sp = to
        "ldr x30, [sp, #16]",
        "ldp x19, x29, [sp], #32",
        "br x30",
    )
}
// ANCHOR_END: switch

/// The first code a fresh stack runs, reached by the `br x30` at the end of
/// [`switch_stacks`]: `entry(arg, message)` with `arg` in x19 and `entry` in x29, as
/// [`init`] laid them out, and the first message still in x2.
#[unsafe(naked)]
unsafe extern "C" fn trampoline() {
    core::arch::naked_asm!(
        "mov x0, x19",
        "mov x1, x2",
        "mov x9, x29",
        "mov x29, xzr", // the end of the frame-pointer chain
        "blr x9",
        // `entry` never returns; if it did, stop here rather than run off the stack.
        "brk #1",
    )
}

/// Lays out a fresh stack so that the first [`switch`] to it calls `entry(arg, message)`.
///
/// # Safety
///
/// `top` must be the 16-byte-aligned upper end of a writable stack of at least a few
/// hundred bytes that nothing else uses.
pub(crate) unsafe fn init(top: *mut u8, entry: Entry, arg: *mut u8) -> StackPointer {
    // The frame `switch_stacks` loads, in words from its lowest address: x19, x29, x30,
    // and a spare word that keeps `sp` 16-byte aligned.
    let mut frame = [0usize; FRAME / 8];
    frame[0] = arg as usize; // x19
    frame[1] = entry as *const () as usize; // x29, until the trampoline clears it
    frame[2] = trampoline as *const () as usize; // x30: where `switch_stacks` branches
    // SAFETY: the caller guarantees `top` ends a writable, unused, aligned stack with
    // room for this frame.
    unsafe {
        let sp = top.cast::<usize>().sub(frame.len());
        sp.copy_from_nonoverlapping(frame.as_ptr(), frame.len());
        sp.cast()
    }
}
