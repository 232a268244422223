// SPDX-License-Identifier: MIT
/*
 * Machine contexts: the smallest state that lets one green thread give its OS thread to another.
 *
 * A context is just a saved stack pointer. The callee-saved registers of the ABI (and the FP
 * control words, which the ABIs also declare callee-saved) are pushed on the suspended stack by
 * weft__ctx_switch, so a switch costs what a function call that saves those registers costs.
 * Caller-saved registers need no saving: the switch is an ordinary call for the compiler.
 */
#ifndef WEFT_ARCH_CTX_H
#define WEFT_ARCH_CTX_H

#include <stddef.h>

typedef struct weft__ctx {
    void *sp;
} weft__ctx;

/** Saves the running context into *from and resumes *to. Returns when something switches back
 *  to *from. Written in assembly; never instrumented by a sanitizer. */
void weft__ctx_switch(weft__ctx *from, weft__ctx *to);

/** Entry of a fresh context. Must never return: it ends by switching away for good. */
typedef void (*weft__ctx_entry)(void *arg);

/** Prepares *ctx so that the first switch to it calls entry(arg) on the stack [lo, hi). */
void weft__ctx_make(weft__ctx *ctx, void *lo, size_t size, weft__ctx_entry entry, void *arg);

#endif
