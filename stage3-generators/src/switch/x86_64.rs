//! The x86_64 context switch (System V ABI): six callee-saved registers and a jump.
//!
//! Read `generator.rs` first; this file is what `resume` and `suspend` call.
//!
//! `cargo bench -p stage3-generators --bench switch_variants` measures the choices made
//! here.

use super::{Entry, StackPointer};

// ANCHOR: switch
/// Saves the callee-saved registers on the current stack, stores the stack pointer in
/// `*save`, and continues the stack saved in `to`.
///
/// To the caller this is a plain function call that returns when some other stack
/// switches back to `*save`. `rbx`, `rbp` and `r12` to `r15` are the only registers a
/// System V function must preserve; the compiler already spills every other register
/// around a call. We end with `pop` + `jmp`, not `ret`: a `ret` that returns to a
/// different call than the one that entered is always mispredicted by the return-stack
/// buffer (a bare round trip takes about 20 ns with `ret` and 3 ns without, here:
/// `benches/switch_variants.rs`).
///
/// NB: the MXCSR and x87 control words are callee-saved too, but Rust code never changes
/// them, so we do not pay for saving them (64 to 76 ns per round trip here).
///
/// # Safety
///
/// `save` must be valid for a write, and `to` must be a stack pointer stored by an
/// earlier `switch` (or made by [`init`]) whose stack is still alive and not running.
#[unsafe(naked)]
pub(crate) unsafe extern "C" fn switch(save: *mut StackPointer, to: StackPointer) {
    core::arch::naked_asm!(
        // The `call` that got us here pushed the return address; push the rest.
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov [rdi], rsp", // *save = rsp
        "mov rsp, rsi",   // rsp = to
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "pop rcx", // the return address saved on the other stack
        "jmp rcx",
    )
}
// ANCHOR_END: switch

/// The first code a fresh stack runs, reached by the `jmp` at the end of [`switch`]:
/// `entry(arg)` with `arg` in `rbx` and `entry` in `r12`, as [`init`] laid them out.
#[unsafe(naked)]
unsafe extern "C" fn trampoline() {
    core::arch::naked_asm!(
        "mov rdi, rbx",
        "call r12",
        // `entry` never returns; if it did, stop here rather than run off the stack.
        "ud2",
    )
}

/// Lays out a fresh stack so that the first [`switch`] to it calls `entry(arg)`.
///
/// # Safety
///
/// `top` must be the 16-byte-aligned upper end of a writable stack of at least a few
/// hundred bytes that nothing else uses.
pub(crate) unsafe fn init(top: *mut u8, entry: Entry, arg: *mut u8) -> StackPointer {
    // What `switch` pops, lowest address first: r15, r14, r13, r12, rbx, rbp, then the
    // address it jumps to. Two spare words above keep `rsp` 16-byte aligned at the
    // `call` in the trampoline, as the ABI requires.
    let frame: [usize; 9] = [
        0,                                // r15
        0,                                // r14
        0,                                // r13
        entry as *const () as usize,      // r12
        arg as usize,                     // rbx
        0,                                // rbp: the end of the frame-pointer chain
        trampoline as *const () as usize, // where `switch` jumps
        0,                                // spare (alignment)
        0,                                // spare
    ];
    // SAFETY: the caller guarantees `top` ends a writable, unused, aligned stack with
    // room for these nine words.
    unsafe {
        let sp = top.cast::<usize>().sub(frame.len());
        sp.copy_from_nonoverlapping(frame.as_ptr(), frame.len());
        sp.cast()
    }
}
