// SPDX-License-Identifier: MIT
/*
 * Error groups: the failures a scope collects from its children (weft_fail, weft_fail_group and
 * the readers of weft.h live in errors.c).
 *
 * A scope's group is a count and segments of records (see the fields in struct weft_scope):
 * failing children append under the scope's lock; readers take no lock and may run on any
 * thread while children still fail, so a record is counted only once complete and never moves
 * until the scope's release.
 */
#ifndef WEFT_ERRORS_H
#define WEFT_ERRORS_H

#include <stddef.h>

#include "task.h"
#include "weft.h"

/* An error group entry with its own copies of the strings. */
typedef struct weft__error_rec {
    weft_error pub;
    char *message;
    char *task;
    char *scope;
} weft__error_rec;

/* The first segment of an error group holds this many records, each next one twice as many;
 * WEFT__ERROR_SEGS of them hold more records (of 56 bytes and more) than the address space. */
#define WEFT__ERROR_SEG0 4
#define WEFT__ERROR_SEGS 40

/* What weft_fail / weft_fail_group leave on a task for its scope to collect. */
struct weft__failure {
    char *message;          /* weft_fail: the formatted message */
    int code;               /* the code it was recorded with: it goes with that code only */
    weft__error_rec *group; /* weft_fail_group: failures handed up, with their origins */
    size_t ngroup;
};

/** Whether the group `f` handed up (weft_fail_group, forgotten scopes) holds a failure of code
 *  `rc`: only then does the group go with a task that ends with `rc`. */
int weft__errors_group_holds(const weft__failure *f, int rc);

/** The message weft_fail recorded in `f` (NULL for none) with the code `rc`, or NULL. */
const char *weft__errors_message_for(const weft__failure *f, int rc);

/** Records the failure of `t`, a child of `s` that ended with `rc` (non-zero): its group handed
 *  up if it has one, else one record with its message. Takes the scope's lock. */
void weft__errors_record(weft_scope *s, weft__task *t, int rc);

/** Hands the failures of `s`, a scope `t` left open and the runtime has just joined for it, up
 *  with `t`'s failure, as weft_fail_group would: after `t`'s own failure when `own` (its result)
 *  is not 0 and `t` has not handed up a group of its own (one record of `own` with its message,
 *  in the scope `t` was spawned into). 0, or -ENOMEM (then nothing of `s` is handed up). */
int weft__errors_hand_up(weft__task *t, weft_scope *s, int own);

/** Frees the group of `s`, which has one (s->error_segs), at its release: empty afterwards. */
void weft__errors_free(weft_scope *s);

/** Frees what weft_fail / weft_fail_group left on a task (not NULL). */
void weft__errors_free_failure(weft__failure *f);

#endif
