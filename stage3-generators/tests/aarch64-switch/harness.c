/* Runs the aarch64 context switch of src/switch/aarch64.rs (its exact instructions,
 * extracted by run.sh) under qemu-aarch64: 100,000 round trips between two stacks while
 * the coroutine trashes every callee-saved register. See run.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
void stage3_switch(void **save, void *to);
void stage3_trampoline(void);
static void *main_sp, *co_sp;

/* The coroutine: counts, and trashes every callee-saved register before each switch back. */
static void entry(void *arg) {
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
        stage3_switch(&co_sp, main_sp);
    }
}

int main(void) {
    static long count;
    size_t size = 64 * 1024;
    char *stack = aligned_alloc(16, size);
    /* The frame init() lays out: 20 words, x19 = arg, x20 = entry, x29 = 0, x30 = trampoline. */
    uintptr_t *sp = (uintptr_t *)(stack + size) - 20;
    for (int i = 0; i < 20; i++) sp[i] = 0;
    sp[0] = (uintptr_t)&count;
    sp[1] = (uintptr_t)entry;
    sp[11] = (uintptr_t)stage3_trampoline;
    co_sp = sp;

    /* Many values live across the switch: the compiler keeps them in x19-x28 and d8-d15. */
    volatile long seed = 3; volatile double fseed = 0.5;
    long a = seed, b = seed * 2, c = seed * 3, d = seed * 4, e = seed * 5, f = seed * 6,
         g = seed * 7, h = seed * 8, i2 = seed * 9, j = seed * 10;
    double p = fseed, q = fseed * 2, r = fseed * 3, s = fseed * 4, t = fseed * 5,
           u = fseed * 6, v = fseed * 7, w = fseed * 8;
    for (int n = 0; n < 100000; n++) {
        stage3_switch(&main_sp, co_sp);
        a += 1; b += 2; c += 3; d += 4; e += 5; f += 6; g += 7; h += 8; i2 += 9; j += 10;
        p += 1; q += 2; r += 3; s += 4; t += 5; u += 6; v += 7; w += 8;
    }
    long N = 100000;
    int ok = count == N && a == 3 + N && b == 6 + 2 * N && c == 9 + 3 * N && d == 12 + 4 * N &&
             e == 15 + 5 * N && f == 18 + 6 * N && g == 21 + 7 * N && h == 24 + 8 * N &&
             i2 == 27 + 9 * N && j == 30 + 10 * N && p == 0.5 + N && q == 1.0 + 2.0 * N &&
             r == 1.5 + 3.0 * N && s == 2.0 + 4.0 * N && t == 2.5 + 5.0 * N &&
             u == 3.0 + 6.0 * N && v == 3.5 + 7.0 * N && w == 4.0 + 8.0 * N;
    printf("%s: %ld round trips; callee-saved registers of both sides intact\n",
           ok ? "ok" : "FAILED", count);
    return ok ? 0 : 1;
}
