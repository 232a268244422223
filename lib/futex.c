// SPDX-License-Identifier: MIT
/*
 * Futex words. A plain futex word per sleeper rather than ck_ec: ck_ec's slow path sleeps in
 * backoff steps of its own (milliseconds at first) and overshot timer deadlines by that much; a
 * worker must wake at its next timer, to the microsecond.
 */
#include "futex.h"

#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void weft__futex_wait(_Atomic uint32_t *word, uint32_t expected, weft_time deadline)
{
    struct timespec ts, *tp = NULL;
    if (deadline != WEFT_NEVER) {
        ts.tv_sec = deadline / WEFT_SEC;
        ts.tv_nsec = deadline % WEFT_SEC;
        tp = &ts;
    }
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, tp, NULL,
            FUTEX_BITSET_MATCH_ANY);
}

void weft__futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX, NULL, NULL, 0);
}

void weft__futex_bump(_Atomic uint32_t *word)
{
    atomic_fetch_add_explicit(word, 1, memory_order_seq_cst);
    weft__futex_wake(word);
}
