/* Runs the aarch64 context switch of src/switch/aarch64.rs (its exact instructions,
 * extracted by run.sh) under qemu-aarch64: 100,000 round trips between two stacks, each
 * carrying a message both ways, while the coroutine trashes every callee-saved register.
 * See run.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
void stage3_switch(void); /* not a C function: only called through `sw` below */
void stage3_trampoline(void);
static void *main_sp, *co_sp;

/* What `switch` in aarch64.rs does: set x30 to label 2 and branch (not `bl`, which
 * would push the return predictor) to the naked switch, declaring every register
 * clobbered except x19 and x29 (which the switch saves), so the compiler saves whatever
 * it keeps in them. x18 too: GCC uses it as a scratch register on Linux, and so does
 * Rust's `clobber_abi("C")` there. The message rides in x2. */
static inline uintptr_t sw(void **save, void *to, uintptr_t message) {
    register void **x0 __asm__("x0") = save;
    register void *x1 __asm__("x1") = to;
    register uintptr_t x2 __asm__("x2") = message;
    __asm__ volatile("adr x30, 2f\n b stage3_switch\n 2:"
                     : "+r"(x0), "+r"(x1), "+r"(x2)
                     :
                     : "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13",
                       "x14", "x15", "x16", "x17", "x18", "x20", "x21", "x22", "x23", "x24", "x25",
                       "x26", "x27", "x28", "x30", "v0", "v1", "v2", "v3", "v4", "v5", "v6",
                       "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14", "v15", "v16",
                       "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26",
                       "v27", "v28", "v29", "v30", "v31", "memory", "cc");
    return x2;
}

/* The coroutine: counts, answers each message with message + 1, and trashes every
 * callee-saved register (x19 and x29 included) before each switch back. */
static void entry(void *arg, uintptr_t message) {
    long *count = arg;
    for (;;) {
        __asm__ volatile(
            "mov x19, #19\n mov x20, #20\n mov x21, #21\n mov x22, #22\n mov x23, #23\n"
            "mov x24, #24\n mov x25, #25\n mov x26, #26\n mov x27, #27\n mov x28, #28\n"
            "fmov d8, #1.0\n fmov d9, #2.0\n fmov d10, #3.0\n fmov d11, #4.0\n"
            "fmov d12, #5.0\n fmov d13, #6.0\n fmov d14, #7.0\n fmov d15, #8.0\n"
            ::: "x19","x20","x21","x22","x23","x24","x25","x26","x27","x28",
                "d8","d9","d10","d11","d12","d13","d14","d15");
        *count += 1;
        message = sw(&co_sp, main_sp, message + 1);
    }
}

int main(void) {
    static long count;
    size_t size = 64 * 1024;
    char *stack = aligned_alloc(16, size);
    /* The frame init() lays out: 4 words, x19 = arg, x29 = entry, x30 = trampoline. */
    uintptr_t *sp = (uintptr_t *)(stack + size) - 4;
    sp[0] = (uintptr_t)&count;
    sp[1] = (uintptr_t)entry;
    sp[2] = (uintptr_t)stage3_trampoline;
    sp[3] = 0;
    co_sp = sp;

    /* Many values live across the switch: the compiler keeps them in x19 and x29 or saves
     * them around it. */
    volatile long seed = 3; volatile double fseed = 0.5;
    long a = seed, b = seed * 2, c = seed * 3, d = seed * 4, e = seed * 5, f = seed * 6,
         g = seed * 7, h = seed * 8, i2 = seed * 9, j = seed * 10;
    double p = fseed, q = fseed * 2, r = fseed * 3, s = fseed * 4, t = fseed * 5,
           u = fseed * 6, v = fseed * 7, w = fseed * 8;
    long answers = 0;
    for (long n = 0; n < 100000; n++) {
        answers += sw(&main_sp, co_sp, n * 2 + 7) == n * 2 + 8;
        a += 1; b += 2; c += 3; d += 4; e += 5; f += 6; g += 7; h += 8; i2 += 9; j += 10;
        p += 1; q += 2; r += 3; s += 4; t += 5; u += 6; v += 7; w += 8;
    }
    long N = 100000;
    int ok = count == N && answers == N && a == 3 + N && b == 6 + 2 * N && c == 9 + 3 * N &&
             d == 12 + 4 * N && e == 15 + 5 * N && f == 18 + 6 * N && g == 21 + 7 * N &&
             h == 24 + 8 * N && i2 == 27 + 9 * N && j == 30 + 10 * N && p == 0.5 + N &&
             q == 1.0 + 2.0 * N && r == 1.5 + 3.0 * N && s == 2.0 + 4.0 * N &&
             t == 2.5 + 5.0 * N && u == 3.0 + 6.0 * N && v == 3.5 + 7.0 * N &&
             w == 4.0 + 8.0 * N;
    printf("%s: %ld round trips, %ld messages answered; registers of both sides intact\n",
           ok ? "ok" : "FAILED", count, answers);
    return ok ? 0 : 1;
}
