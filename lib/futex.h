// SPDX-License-Identifier: MIT
/* Futex words (futex.c): a thread sleeps while a 32-bit word holds a value it read. */
#ifndef WEFT_FUTEX_H
#define WEFT_FUTEX_H

#include <stdatomic.h>
#include <stdint.h>

#include "weft.h"

/** Sleeps while *word == expected, until `deadline` (weft_now() clock; WEFT_NEVER: no limit).
 *  May return early (a signal, a spurious wake-up): the caller looks again. */
void weft__futex_wait(_Atomic uint32_t *word, uint32_t expected, weft_time deadline);
/** Wakes every thread sleeping on *word. */
void weft__futex_wake(_Atomic uint32_t *word);
/** Changes *word and wakes every thread sleeping on it. */
void weft__futex_bump(_Atomic uint32_t *word);

#endif
