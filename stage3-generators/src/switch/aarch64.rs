//! The aarch64 context switch (AAPCS64): x19 to x28, the frame pointer x29, the link
//! register x30, the stack pointer, and the low halves d8 to d15 of v8 to v15.
//!
//! x18 is the platform register (reserved on macOS, a shadow call stack elsewhere): we
//! leave it alone. Read `x86_64.rs` first: this is the same switch for another
//! instruction set.
//!
//! `tests/aarch64-switch/run.sh` runs these exact instructions under `qemu-aarch64`, so
//! they can be checked on an x86_64 machine without Rust's aarch64 standard library.

use super::{Entry, StackPointer};

/// Bytes `switch` stores on the stack: 12 general registers and 8 vector halves,
/// 160 bytes, a multiple of 16 as `sp` requires.
const FRAME: usize = 160;

// ANCHOR: switch
/// Saves the callee-saved registers on the current stack, stores the stack pointer in
/// `*save`, and continues the stack saved in `to`.
///
/// Ends with `br x30` rather than `ret`, for the same reason as on x86_64: the return
/// predictor would expect the caller of this call, and a switch never goes back there.
///
/// NB: like the x86_64 switch, it does not save the floating-point control register
/// (FPCR): Rust code never changes it.
///
/// # Safety
///
/// `save` must be valid for a write, and `to` must be a stack pointer stored by an
/// earlier `switch` (or made by [`init`]) whose stack is still alive and not running.
#[unsafe(naked)]
pub(crate) unsafe extern "C" fn switch(save: *mut StackPointer, to: StackPointer) {
    core::arch::naked_asm!(
        "sub sp, sp, #160",
        "stp x19, x20, [sp, #0]",
        "stp x21, x22, [sp, #16]",
        "stp x23, x24, [sp, #32]",
        "stp x25, x26, [sp, #48]",
        "stp x27, x28, [sp, #64]",
        "stp x29, x30, [sp, #80]",
        "stp d8, d9, [sp, #96]",
        "stp d10, d11, [sp, #112]",
        "stp d12, d13, [sp, #128]",
        "stp d14, d15, [sp, #144]",
        "mov x9, sp",
        "str x9, [x0]", // *save = sp
        "mov sp, x1",   // sp = to
        "ldp x19, x20, [sp, #0]",
        "ldp x21, x22, [sp, #16]",
        "ldp x23, x24, [sp, #32]",
        "ldp x25, x26, [sp, #48]",
        "ldp x27, x28, [sp, #64]",
        "ldp x29, x30, [sp, #80]",
        "ldp d8, d9, [sp, #96]",
        "ldp d10, d11, [sp, #112]",
        "ldp d12, d13, [sp, #128]",
        "ldp d14, d15, [sp, #144]",
        "add sp, sp, #160",
        "br x30",
    )
}
// ANCHOR_END: switch

/// The first code a fresh stack runs, reached by the `br x30` at the end of [`switch`]:
/// `entry(arg)` with `arg` in x19 and `entry` in x20, as [`init`] laid them out.
#[unsafe(naked)]
unsafe extern "C" fn trampoline() {
    core::arch::naked_asm!(
        "mov x0, x19",
        "blr x20",
        // `entry` never returns; if it did, stop here rather than run off the stack.
        "brk #1",
    )
}

/// Lays out a fresh stack so that the first [`switch`] to it calls `entry(arg)`.
///
/// # Safety
///
/// `top` must be the 16-byte-aligned upper end of a writable stack of at least a few
/// hundred bytes that nothing else uses.
pub(crate) unsafe fn init(top: *mut u8, entry: Entry, arg: *mut u8) -> StackPointer {
    // The frame `switch` loads, in words from its lowest address: x19 to x28, x29, x30,
    // then d8 to d15. All zero except the three that matter.
    let mut frame = [0usize; FRAME / 8];
    frame[0] = arg as usize; // x19
    frame[1] = entry as *const () as usize; // x20
    frame[10] = 0; // x29: the end of the frame-pointer chain
    frame[11] = trampoline as *const () as usize; // x30: where `switch` branches
    // SAFETY: the caller guarantees `top` ends a writable, unused, aligned stack with
    // room for this frame.
    unsafe {
        let sp = top.cast::<usize>().sub(frame.len());
        sp.copy_from_nonoverlapping(frame.as_ptr(), frame.len());
        sp.cast()
    }
}
