// SPDX-License-Identifier: MIT
/*
 * What a test that includes the library's own headers may ask of a task's record. Kept apart
 * from support.h, which the programs that see only weft.h include.
 */
#ifndef WEFT_TESTS_SUPPORT_TASK_H
#define WEFT_TESTS_SUPPORT_TASK_H

#include <stdatomic.h>

#include "task.h"

/* 1 once the task in `slot` has parked in its wait. A task parked on a descriptor has
 * registered as its waiter first (fd.c registers before the park, under the record's lock,
 * which a second waiter takes too). */
static inline int support_parked(weft__task *_Atomic *slot)
{
    weft__task *t = atomic_load(slot);
    return t && atomic_load(&t->wait) == WEFT__WAIT_PARKED;
}

#endif
