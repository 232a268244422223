// SPDX-License-Identifier: MIT
/* Building a fresh context: the frame weft__ctx_switch expects to pop. */
#include "arch/ctx.h"

#include <stdint.h>
#include <string.h>

void weft__ctx_trampoline(void);

void weft__ctx_make(weft__ctx *ctx, void *lo, size_t size, weft__ctx_entry entry, void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* After `ret` pops the trampoline's address, rsp must be 16-byte aligned (it is `top`) so
     * that the trampoline's `call` enters the entry function with the ABI's rsp % 16 == 8. */
    uint64_t *sp = (uint64_t *)top;
    *--sp = (uint64_t)(uintptr_t)weft__ctx_trampoline;
    *--sp = 0;                          /* rbp */
    *--sp = 0;                          /* rbx */
    *--sp = (uint64_t)(uintptr_t)entry; /* r12 */
    *--sp = (uint64_t)(uintptr_t)arg;   /* r13 */
    *--sp = 0;                          /* r14 */
    *--sp = 0;                          /* r15 */
    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    uint64_t fpslot = (uint64_t)mxcsr | ((uint64_t)fpucw << 32);
    *--sp = fpslot;
    ctx->sp = sp;
#elif defined(__aarch64__)
    uint64_t *sp = (uint64_t *)(top - 176);
    memset(sp, 0, 176);
    sp[0] = (uint64_t)(uintptr_t)entry;                 /* x19 */
    sp[1] = (uint64_t)(uintptr_t)arg;                   /* x20 */
    sp[11] = (uint64_t)(uintptr_t)weft__ctx_trampoline; /* x30 */
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    sp[20] = fpcr;
    ctx->sp = sp;
#else
#error "weft: no context switch for this architecture"
#endif
}
