//! Why the switch in `src/switch/x86_64.rs` looks the way it does: three ways to write it,
//! measured on a bare ping-pong between two stacks (no generator around them).
//!
//! `cargo bench -p stage3-generators --bench switch_variants`
//!
//! - `pop + jmp`: a self-contained switch that saves all six callee-saved registers
//!   itself, ending as the crate's `switch_stacks` does. (The crate's own switch saves
//!   only `rbx` and `rbp` and lets the compiler save the rest where needed, which needs an
//!   `asm!` block at each call site; a bare ping-pong has nothing live to save, so the
//!   six-register version isolates what the ending costs.)
//! - `ret`: the same, ending with `ret`. The return-stack buffer predicts every `ret` to
//!   go back to the call that matches it; a switch never does, so every one mispredicts.
//! - `+ fp control words`: the `pop + jmp` switch, also saving and restoring MXCSR and the x87
//!   control word, the two callee-saved control registers the crate deliberately skips.
//!   Once with both stacks using the same values, once with different ones (the coroutine
//!   starts with flush-to-zero set), to see whether differing values cost more.
//!
//! x86_64 only; the benchmark is empty elsewhere.

use criterion::{Criterion, criterion_group, criterion_main};

#[cfg(target_arch = "x86_64")]
mod variants {
    use std::hint::black_box;

    use criterion::Criterion;
    use stage3_generators::stack::Stack;

    type Switch = unsafe extern "C" fn(save: *mut *mut u8, to: *mut u8);

    /// The six-register switch, so that the variants below differ from it by one thing.
    #[unsafe(naked)]
    unsafe extern "C" fn pop_jmp(_save: *mut *mut u8, _to: *mut u8) {
        core::arch::naked_asm!(
            "push rbp",
            "push rbx",
            "push r12",
            "push r13",
            "push r14",
            "push r15",
            "mov [rdi], rsp",
            "mov rsp, rsi",
            "pop r15",
            "pop r14",
            "pop r13",
            "pop r12",
            "pop rbx",
            "pop rbp",
            "pop rcx",
            "jmp rcx",
        )
    }

    #[unsafe(naked)]
    unsafe extern "C" fn ret(_save: *mut *mut u8, _to: *mut u8) {
        core::arch::naked_asm!(
            "push rbp",
            "push rbx",
            "push r12",
            "push r13",
            "push r14",
            "push r15",
            "mov [rdi], rsp",
            "mov rsp, rsi",
            "pop r15",
            "pop r14",
            "pop r13",
            "pop r12",
            "pop rbx",
            "pop rbp",
            "ret",
        )
    }

    #[unsafe(naked)]
    unsafe extern "C" fn fp_env(_save: *mut *mut u8, _to: *mut u8) {
        core::arch::naked_asm!(
            "push rbp",
            "push rbx",
            "push r12",
            "push r13",
            "push r14",
            "push r15",
            "sub rsp, 8",
            "stmxcsr [rsp]",
            "fnstcw [rsp + 4]",
            "mov [rdi], rsp",
            "mov rsp, rsi",
            "ldmxcsr [rsp]",
            "fldcw [rsp + 4]",
            "add rsp, 8",
            "pop r15",
            "pop r14",
            "pop r13",
            "pop r12",
            "pop rbx",
            "pop rbp",
            "pop rcx",
            "jmp rcx",
        )
    }

    /// The same trampoline as the crate's: `entry(rbx)`, entry in `r12`.
    #[unsafe(naked)]
    unsafe extern "C" fn trampoline() {
        core::arch::naked_asm!("mov rdi, rbx", "call r12", "ud2")
    }

    /// Both saved stack pointers, and the switch under test.
    struct Pair {
        main: *mut u8,
        coroutine: *mut u8,
        switch: Switch,
    }

    /// The coroutine: switches straight back, forever.
    extern "C" fn bounce(pair: *mut u8) -> ! {
        let pair = pair.cast::<Pair>();
        loop {
            // SAFETY: `pair` outlives the benchmark, and `main` was saved by the switch
            // that brought us here.
            unsafe { ((*pair).switch)(&raw mut (*pair).coroutine, (*pair).main) };
        }
    }

    /// Times one round trip (two switches) with `switch`; `mxcsr` is the coroutine's
    /// initial MXCSR when `switch` restores it.
    fn measure(c: &mut Criterion, name: &str, switch: Switch, mxcsr: Option<u32>) {
        let stack = Stack::take().expect("a stack");
        let pair = Box::into_raw(Box::new(Pair {
            main: std::ptr::null_mut(),
            coroutine: std::ptr::null_mut(),
            switch,
        }));
        // What the switch pops, lowest address first, then two spare words so that `rsp`
        // is 16-byte aligned at the trampoline's `call`.
        let mut frame = vec![0usize, 0, 0, bounce as *const () as usize, pair as usize, 0];
        frame.push(trampoline as *const () as usize);
        if let Some(mxcsr) = mxcsr {
            // MXCSR, and above it the x87 control word (0x037f, the default).
            frame.insert(0, mxcsr as usize | (0x037f << 32));
        }
        frame.resize(frame.len() + 2, 0);
        // SAFETY: the stack is ours and unused; the frame is a few words below its top,
        // and `pair` lives until the end of this function.
        unsafe {
            let sp = stack.top().cast::<usize>().sub(frame.len());
            sp.copy_from_nonoverlapping(frame.as_ptr(), frame.len());
            (*pair).coroutine = sp.cast();
        }
        c.bench_function(name, |b| {
            b.iter(|| {
                // SAFETY: the coroutine is suspended in `bounce` (or not started yet), on
                // a stack that lives until the end of `measure`.
                unsafe { switch(&raw mut (*pair).main, (*pair).coroutine) };
                black_box(pair);
            })
        });
        // The coroutine stays suspended in `bounce` forever; its stack holds nothing
        // that needs dropping, so it can go back to the pool.
        stack.give_back();
        // SAFETY: made by `Box::into_raw` above; the coroutine will never run again.
        drop(unsafe { Box::from_raw(pair) });
    }

    pub fn all(c: &mut Criterion) {
        let default_mxcsr = 0x1f80;
        let flush_to_zero = 0x1f80 | 0x8000 | 0x0040;
        measure(c, "round trip, pop + jmp (the crate's)", pop_jmp, None);
        measure(c, "round trip, ret", ret, None);
        measure(
            c,
            "round trip, + fp control words, same values",
            fp_env,
            Some(default_mxcsr),
        );
        measure(
            c,
            "round trip, + fp control words, different values",
            fp_env,
            Some(flush_to_zero),
        );
    }
}

fn variants(c: &mut Criterion) {
    #[cfg(target_arch = "x86_64")]
    variants::all(c);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = c;
}

criterion_group!(benches, variants);
criterion_main!(benches);
