//! The x86_64 context switch (System V ABI): six callee-saved registers, four of them
//! saved by the compiler only where needed, two by hand, and a jump.
//!
//! Read `generator.rs` first; this file is what `resume` and `suspend` call.
//!
//! `cargo bench -p stage3-generators --bench switch_variants` measures the choices made
//! here.

use super::{Entry, StackPointer};

// ANCHOR: switch
/// Saves the current stack, continues the stack saved in `to`, and hands it `message`;
/// returns the message passed by whichever stack switches back to `*save`.
///
/// The `asm!` block tells the compiler that the switch clobbers every register except
/// `rbx`, `rbp` and `rsp`: it then saves only the values it still needs, where it can
/// (often none, or once outside a loop), instead of all six callee-saved registers on
/// every switch. `rbx` and `rbp` are reserved by LLVM and cannot be named as clobbered,
/// so [`switch_stacks`] saves those two itself. `message` rides in `rdx`, untouched by
/// the switch, from one stack's `asm!` block to the other's: no memory on the way.
///
/// The block pushes its own return address and jumps, rather than `call`: the CPU's
/// return-stack buffer pushes an entry on every `call`, and no `ret` ever pops this one,
/// so after a `call` the next `ret` of the resumed side (the function that called
/// `resume`, returning) is predicted to go back into the other stack: mispredicted, on
/// every switch (a round trip inside a function that returns took 12 ns instead of 5).
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
            "lea rcx, [rip + 2f]", // where the other stack comes back to: label 2
            "push rcx",
            "jmp {switch_stacks}",
            "2:",
            switch_stacks = sym switch_stacks,
            in("rdi") save,
            in("rsi") to,
            inlateout("rdx") message => received,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            clobber_abi("C"),
        )
    };
    received
}

/// Pushes `rbx` and `rbp`, stores the stack pointer in `*rdi`, loads `rsi` as the stack
/// pointer, pops that stack's `rbx` and `rbp` and jumps to where it left off.
///
/// We end with `pop` + `jmp`, not `ret`: a `ret` that returns to a different call than
/// the one that entered is always mispredicted by the return-stack buffer (a bare round
/// trip takes about 20 ns with `ret` and 3 ns without, here:
/// `benches/switch_variants.rs`). Nor is it entered by a `call` (see [`switch`]).
///
/// Its 13 bytes start on a 16-byte boundary, so the final `jmp` never straddles a 64-byte
/// line: where it did (wherever the linker happened to put the function), a round trip
/// took 4.1 to 5.5 ns instead of 3.9, changing from one process to the next (AMD Zen 4).
/// Naked functions are only 4-byte aligned by default. In an ELF object each one has its
/// own section, which `.p2align` aligns: no padding is executed (on macOS, a `nop` or
/// two may be).
///
/// NB: the MXCSR and x87 control words are callee-saved too, but Rust code never changes
/// them, so we do not pay for saving them (64 to 76 ns per round trip here).
///
/// # Safety
///
/// Only for [`switch`]'s `asm!` block, which declares what it clobbers.
#[unsafe(naked)]
unsafe extern "C" fn switch_stacks() {
    core::arch::naked_asm!(
        ".p2align 4",
        // `switch` pushed the address to come back to; push the rest.
        "push rbp",
        "push rbx",
        "mov [rdi], rsp", // *save = rsp
        "mov rsp, rsi",   // rsp = to
        "pop rbx",
        "pop rbp",
        "pop rcx", // the return address saved on the other stack
        "jmp rcx",
    )
}
// ANCHOR_END: switch

/// The first code a fresh stack runs, reached by the `jmp` at the end of
/// [`switch_stacks`]: `entry(arg, message)` with `arg` in `rbx` and `entry` in `rbp`, as
/// [`init`] laid them out, and the first message still in `rdx`.
#[unsafe(naked)]
unsafe extern "C" fn trampoline() {
    core::arch::naked_asm!(
        "mov rdi, rbx",
        "mov rsi, rdx",
        "mov rax, rbp",
        "xor ebp, ebp", // the end of the frame-pointer chain
        "call rax",
        // `entry` never returns; if it did, stop here rather than run off the stack.
        "ud2",
    )
}

/// Lays out a fresh stack so that the first [`switch`] to it calls `entry(arg, message)`.
///
/// # Safety
///
/// `top` must be the 16-byte-aligned upper end of a writable stack of at least a few
/// hundred bytes that nothing else uses.
pub(crate) unsafe fn init(top: *mut u8, entry: Entry, arg: *mut u8) -> StackPointer {
    // What `switch_stacks` pops, lowest address first: rbx, rbp, then the address it
    // jumps to. Two spare words above keep `rsp` 16-byte aligned at the `call` in the
    // trampoline, as the ABI requires.
    let frame: [usize; 5] = [
        arg as usize,                     // rbx
        entry as *const () as usize,      // rbp
        trampoline as *const () as usize, // where `switch_stacks` jumps
        0,                                // spare (alignment)
        0,                                // spare
    ];
    // SAFETY: the caller guarantees `top` ends a writable, unused, aligned stack with
    // room for these five words.
    unsafe {
        let sp = top.cast::<usize>().sub(frame.len());
        sp.copy_from_nonoverlapping(frame.as_ptr(), frame.len());
        sp.cast()
    }
}
