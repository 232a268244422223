// SPDX-License-Identifier: MIT
/*
 * The context switch (lib/arch/ctx.h): weft__ctx_make builds a context on a plain malloc'd
 * stack, weft__ctx_switch ping-pongs between contexts, and every register the ABI declares
 * callee-saved (and the FP control state) survives a round trip.
 *
 * The register check cannot be written in C: at -O0 nothing lives in a callee-saved register
 * across the call, and at -O2 the compiler chooses what does. So switch_probe, below, is a few
 * lines of assembly that loads known values into every callee-saved register, switches away,
 * and stores what those registers hold once it is resumed. The context on the other side runs
 * the same probe with other values, so a switch that failed to save or restore a register hands
 * the other side's value back.
 *
 * Failures inside a context are counted rather than asserted there: a Criterion assertion
 * unwinds with longjmp to the test's own stack, which is not the stack the context runs on.
 */
#include <criterion/criterion.h>
#include <fenv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/ctx.h"

#if defined(__SANITIZE_ADDRESS__) || defined(WEFT_ASAN)
#include <sanitizer/common_interface_defs.h>
#define TEST_ASAN 1
#endif

/* ---- the probe ---------------------------------------------------------------------------- */

/* switch_probe(from, to, out, seed): sets the callee-saved registers to seed+1, seed+2, ...,
 * calls weft__ctx_switch(from, to), and when resumed stores those registers into out[]. */
void switch_probe(weft__ctx *from, weft__ctx *to, uint64_t *out, uint64_t seed);

#if defined(__x86_64__)
/* rbx, rbp, r12-r15. The x87 and SSE control words are checked by the rounding tests. */
#define PROBE_REGS 6
__asm__(".pushsection .text\n"
        ".p2align 4\n"
        ".type switch_probe, @function\n"
        "switch_probe:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    pushq %rdx\n" /* out; seven pushes leave rsp 16-byte aligned for the call */
        "    leaq 1(%rcx), %rbx\n"
        "    leaq 2(%rcx), %rbp\n"
        "    leaq 3(%rcx), %r12\n"
        "    leaq 4(%rcx), %r13\n"
        "    leaq 5(%rcx), %r14\n"
        "    leaq 6(%rcx), %r15\n"
        "    call weft__ctx_switch@PLT\n"
        "    popq %rdx\n"
        "    movq %rbx, 0(%rdx)\n"
        "    movq %rbp, 8(%rdx)\n"
        "    movq %r12, 16(%rdx)\n"
        "    movq %r13, 24(%rdx)\n"
        "    movq %r14, 32(%rdx)\n"
        "    movq %r15, 40(%rdx)\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size switch_probe, .-switch_probe\n"
        ".popsection\n");
#elif defined(__aarch64__)
/* x19-x28, x29 (fp), then d8-d15 (their low 64 bits are callee-saved). */
#define PROBE_REGS 19
__asm__(".pushsection .text\n"
        ".p2align 4\n"
        ".type switch_probe, %function\n"
        "switch_probe:\n"
        "    stp x29, x30, [sp, #-176]!\n"
        "    stp x19, x20, [sp, #16]\n"
        "    stp x21, x22, [sp, #32]\n"
        "    stp x23, x24, [sp, #48]\n"
        "    stp x25, x26, [sp, #64]\n"
        "    stp x27, x28, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n"
        "    stp d10, d11, [sp, #112]\n"
        "    stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    str x2, [sp, #160]\n"
        "    add x19, x3, #1\n"
        "    add x20, x3, #2\n"
        "    add x21, x3, #3\n"
        "    add x22, x3, #4\n"
        "    add x23, x3, #5\n"
        "    add x24, x3, #6\n"
        "    add x25, x3, #7\n"
        "    add x26, x3, #8\n"
        "    add x27, x3, #9\n"
        "    add x28, x3, #10\n"
        "    add x29, x3, #11\n"
        "    add x9, x3, #12\n"
        "    fmov d8, x9\n"
        "    add x9, x3, #13\n"
        "    fmov d9, x9\n"
        "    add x9, x3, #14\n"
        "    fmov d10, x9\n"
        "    add x9, x3, #15\n"
        "    fmov d11, x9\n"
        "    add x9, x3, #16\n"
        "    fmov d12, x9\n"
        "    add x9, x3, #17\n"
        "    fmov d13, x9\n"
        "    add x9, x3, #18\n"
        "    fmov d14, x9\n"
        "    add x9, x3, #19\n"
        "    fmov d15, x9\n"
        "    bl weft__ctx_switch\n"
        "    ldr x2, [sp, #160]\n"
        "    stp x19, x20, [x2, #0]\n"
        "    stp x21, x22, [x2, #16]\n"
        "    stp x23, x24, [x2, #32]\n"
        "    stp x25, x26, [x2, #48]\n"
        "    stp x27, x28, [x2, #64]\n"
        "    str x29, [x2, #80]\n"
        "    stp d8, d9, [x2, #88]\n"
        "    stp d10, d11, [x2, #104]\n"
        "    stp d12, d13, [x2, #120]\n"
        "    stp d14, d15, [x2, #136]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    ldp d12, d13, [sp, #128]\n"
        "    ldp d10, d11, [sp, #112]\n"
        "    ldp d8, d9, [sp, #96]\n"
        "    ldp x27, x28, [sp, #80]\n"
        "    ldp x25, x26, [sp, #64]\n"
        "    ldp x23, x24, [sp, #48]\n"
        "    ldp x21, x22, [sp, #32]\n"
        "    ldp x19, x20, [sp, #16]\n"
        "    ldp x29, x30, [sp], #176\n"
        "    ret\n"
        ".size switch_probe, .-switch_probe\n"
        ".popsection\n");
#else
#error "test_switch: no probe for this architecture"
#endif

/* ---- contexts on malloc'd stacks ------------------------------------------------------------ */

#define STACK_SIZE (128 * 1024)

typedef struct side {
    weft__ctx ctx;
    char *stack; /* NULL for the test's own thread stack */
} side;

typedef struct game {
    side main, a, b;
    long rounds;
    /* results, written by the contexts, checked on the test's stack */
    long a_checks, b_checks;
    long reg_errors;
    long fp_errors;
    int entered_a, entered_b;
    void *arg_seen_a;
    int local_in_stack_a;
    uint64_t first_bad[PROBE_REGS], first_bad_expected;
} game;

static void side_init(side *s)
{
    memset(s, 0, sizeof(*s));
    s->stack = aligned_alloc(64, STACK_SIZE);
    cr_assert_not_null(s->stack);
    /* Poison the stack so that a context reading a slot it never wrote would see garbage. */
    memset(s->stack, 0xa5, STACK_SIZE);
}

static void side_free(side *s)
{
    free(s->stack);
    s->stack = NULL;
}

#ifdef TEST_ASAN
/* Tell ASan which stack runs next, as the runtime does (sched.c). */
static void asan_before(const side *to, void **fake)
{
    if (to->stack)
        __sanitizer_start_switch_fiber(fake, to->stack, STACK_SIZE);
    else
        __sanitizer_start_switch_fiber(fake, NULL, 0); /* bounds come from the finish call */
}
static void asan_after(void *fake)
{
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
}
static void asan_entered(void)
{
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
}
#else
static void asan_before(const side *to, void **fake)
{
    (void)to;
    (void)fake;
}
static void asan_after(void *fake)
{
    (void)fake;
}
static void asan_entered(void) {}
#endif

static void plain_switch(side *from, side *to)
{
    void *fake = NULL;
    asan_before(to, &fake);
    weft__ctx_switch(&from->ctx, &to->ctx);
    asan_after(fake);
}

/* Switches with every callee-saved register set from `seed`; returns how many came back
 * different. */
static int probed_switch(game *g, side *from, side *to, uint64_t seed)
{
    uint64_t out[PROBE_REGS];
    memset(out, 0, sizeof(out));
    void *fake = NULL;
    asan_before(to, &fake);
    switch_probe(&from->ctx, &to->ctx, out, seed);
    asan_after(fake);
    int bad = 0;
    for (int i = 0; i < PROBE_REGS; i++)
        bad += out[i] != seed + (uint64_t)i + 1;
    if (bad && g->reg_errors == 0) {
        memcpy(g->first_bad, out, sizeof(out));
        g->first_bad_expected = seed;
    }
    g->reg_errors += bad;
    return bad;
}

/* ---- a fresh context --------------------------------------------------------------------------
 */

static void entry_once(void *arg)
{
    game *g = arg;
    asan_entered();
    g->entered_a = 1;
    g->arg_seen_a = arg;
    char local;
    g->local_in_stack_a = &local >= g->a.stack && &local < g->a.stack + STACK_SIZE;
    plain_switch(&g->a, &g->main);
    /* Resumed a second time: count it and leave for good. */
    g->entered_a++;
    plain_switch(&g->a, &g->main);
    abort(); /* never resumed again */
}

Test(switch, fresh_context_runs_entry_on_its_stack)
{
    game g;
    memset(&g, 0, sizeof(g));
    side_init(&g.a);
    weft__ctx_make(&g.a.ctx, g.a.stack, STACK_SIZE, entry_once, &g);
    cr_assert_eq(g.entered_a, 0, "weft__ctx_make must not run the entry");
    plain_switch(&g.main, &g.a);
    cr_assert_eq(g.entered_a, 1);
    cr_assert_eq(g.arg_seen_a, &g, "the entry got another argument");
    cr_assert(g.local_in_stack_a, "the entry does not run on the stack it was given");
    plain_switch(&g.main, &g.a);
    cr_assert_eq(g.entered_a, 2, "the context did not resume where it left off");
    side_free(&g.a);
}

/* ---- callee-saved registers over many round trips ------------------------------------------- */

static uint64_t seed_of(int who, long round)
{
    /* Distinct for every side and round; the high bits make them look unlike small integers. */
    return 0x5eed000000000000ull ^ ((uint64_t)who << 40) ^ ((uint64_t)round << 8);
}

static void entry_ping(void *arg)
{
    game *g = arg;
    asan_entered();
    for (long r = 0; r < g->rounds; r++) {
        probed_switch(g, &g->a, &g->b, seed_of(1, r));
        g->a_checks++;
    }
    /* Back to the test with the test's own registers (checked there). */
    plain_switch(&g->a, &g->main);
    abort();
}

static void entry_pong(void *arg)
{
    game *g = arg;
    asan_entered();
    for (long r = 0;; r++) {
        probed_switch(g, &g->b, &g->a, seed_of(2, r));
        g->b_checks++;
    }
}

Test(switch, ping_pong_preserves_callee_saved_registers)
{
    game g;
    memset(&g, 0, sizeof(g));
    g.rounds = 200000;
    side_init(&g.a);
    side_init(&g.b);
    weft__ctx_make(&g.a.ctx, g.a.stack, STACK_SIZE, entry_ping, &g);
    weft__ctx_make(&g.b.ctx, g.b.stack, STACK_SIZE, entry_pong, &g);
    int bad_main = probed_switch(&g, &g.main, &g.a, seed_of(3, 0));
    cr_assert_eq(bad_main, 0, "the test's own registers came back changed");
    cr_assert_eq(g.a_checks, g.rounds);
    cr_assert_eq(g.b_checks, g.rounds - 1, "b resumed %ld times", g.b_checks);
    cr_assert_eq(g.reg_errors, 0,
                 "%ld callee-saved registers lost; first: expected seed %#llx, got "
                 "%#llx %#llx %#llx ...",
                 g.reg_errors, (unsigned long long)g.first_bad_expected,
                 (unsigned long long)g.first_bad[0], (unsigned long long)g.first_bad[1],
                 (unsigned long long)g.first_bad[2]);
    side_free(&g.a);
    side_free(&g.b);
}

/* ---- FP control state -------------------------------------------------------------------------
 */

static const int modes[4] = {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};

/* 1/3 in double (SSE on x86-64, so it reads MXCSR) and in long double (x87 there, so it reads
 * the x87 control word): both differ between the four modes. */
typedef struct quotients {
    double d;
    long double ld;
} quotients;

static quotients divide_now(void)
{
    volatile double one = 1.0, three = 3.0;
    volatile long double lone = 1.0L, lthree = 3.0L;
    quotients q;
    q.d = one / three;
    q.ld = lone / lthree;
    return q;
}

typedef struct fp_game {
    game g;
    quotients ref[4];
    long rounds;
    long a_checks, b_checks;
    long errors;
} fp_game;

static int fp_state_is(const fp_game *f, int m)
{
    quotients q = divide_now();
    return fegetround() == modes[m] && q.d == f->ref[m].d && q.ld == f->ref[m].ld;
}

static void entry_fp_a(void *arg)
{
    fp_game *f = arg;
    asan_entered();
    for (long r = 0; r < f->rounds; r++) {
        int m = (int)(r % 2) ? 1 : 2; /* upward, downward */
        fesetround(modes[m]);
        plain_switch(&f->g.a, &f->g.b);
        f->errors += !fp_state_is(f, m);
        f->a_checks++;
    }
    plain_switch(&f->g.a, &f->g.main);
    abort();
}

static void entry_fp_b(void *arg)
{
    fp_game *f = arg;
    asan_entered();
    for (long r = 0;; r++) {
        int m = (int)(r % 2) ? 3 : 0; /* toward zero, to nearest */
        fesetround(modes[m]);
        plain_switch(&f->g.b, &f->g.a);
        f->errors += !fp_state_is(f, m);
        f->b_checks++;
    }
}

Test(switch, rounding_mode_is_kept_per_context)
{
    fp_game f;
    memset(&f, 0, sizeof(f));
    for (int m = 0; m < 4; m++) {
        cr_assert_eq(fesetround(modes[m]), 0);
        f.ref[m] = divide_now();
    }
    cr_assert_neq(f.ref[1].d, f.ref[2].d, "upward and downward division should differ");
    cr_assert(f.ref[1].ld != f.ref[2].ld, "upward and downward division should differ");
    f.rounds = 20000;
    side_init(&f.g.a);
    side_init(&f.g.b);
    weft__ctx_make(&f.g.a.ctx, f.g.a.stack, STACK_SIZE, entry_fp_a, &f);
    weft__ctx_make(&f.g.b.ctx, f.g.b.stack, STACK_SIZE, entry_fp_b, &f);

    /* The test's own mode must come back too, although both contexts changed theirs. */
    cr_assert_eq(fesetround(FE_TOWARDZERO), 0);
    plain_switch(&f.g.main, &f.g.a);
    int main_ok = fp_state_is(&f, 3);
    fesetround(FE_TONEAREST);

    cr_assert(main_ok, "the test's rounding mode was not restored");
    cr_assert_eq(f.a_checks, f.rounds);
    cr_assert_eq(f.b_checks, f.rounds - 1);
    cr_assert_eq(f.errors, 0, "%ld round trips lost their FP control state", f.errors);
    side_free(&f.g.a);
    side_free(&f.g.b);
}
