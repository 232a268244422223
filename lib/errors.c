// SPDX-License-Identifier: MIT
/* Error groups: recording the failures of a scope's children, reading them, handing them up;
 * see errors.h. */
#include "errors.h"
#include "alloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"
#include "scope.h"

/* ---- records ------------------------------------------------------------------------------ */

/* Which segment of an error group holds record i, and where in it (see weft_scope). */
static inline unsigned error_seg_of(size_t i, size_t *at)
{
    size_t j = i + WEFT__ERROR_SEG0;
    unsigned k = (unsigned)(63 - __builtin_clzll(j)) - 2; /* log2(j) - log2(WEFT__ERROR_SEG0) */
    *at = j - ((size_t)WEFT__ERROR_SEG0 << k);
    return k;
}

/* Record i of the group of `s`, which is below a count loaded with acquire (or by the owner,
 * after the join). */
static inline weft__error_rec *error_at(const weft_scope *s, size_t i)
{
    size_t at;
    unsigned k = error_seg_of(i, &at);
    return &s->error_segs[k][at];
}

static char *dup_bounded(const char *str)
{
    if (!str)
        str = "";
    size_t n = strnlen(str, WEFT_ERROR_MESSAGE_MAX - 1);
    char *d = weft__alloc_malloc(n + 1);
    if (d) {
        memcpy(d, str, n);
        d[n] = 0;
    }
    return d;
}

/* Appends one failure to the group; called with s->lock held. A record that cannot be allocated
 * is lost (first_failure keeps its code); one whose strings cannot be, keeps its code. Readers
 * take no lock: the record is filled in before the count that shows it is raised, and it never
 * moves (the group grows by new segments). */
static void append_error(weft_scope *s, int code, const char *msg, const char *task, uint64_t id,
                         const char *scope_name)
{
    size_t i = atomic_load_explicit(&s->nerrors, memory_order_relaxed), at;
    unsigned k = error_seg_of(i, &at);
    if (k >= WEFT__ERROR_SEGS)
        return;
    if (!s->error_segs) {
        s->error_segs = weft__alloc_calloc(WEFT__ERROR_SEGS, sizeof(*s->error_segs));
        if (!s->error_segs)
            return;
    }
    if (!s->error_segs[k]) {
        s->error_segs[k] =
            weft__alloc_malloc(((size_t)WEFT__ERROR_SEG0 << k) * sizeof(weft__error_rec));
        if (!s->error_segs[k])
            return;
    }
    weft__error_rec *r = &s->error_segs[k][at];
    r->message = dup_bounded(msg);
    r->task = dup_bounded(task);
    r->scope = dup_bounded(scope_name);
    r->pub.code = code;
    r->pub.message = r->message ? r->message : "";
    r->pub.task = r->task ? r->task : "";
    r->pub.task_id = id;
    r->pub.scope = r->scope ? r->scope : "";
    atomic_store_explicit(&s->nerrors, i + 1, memory_order_release);
}

const char *weft__errors_message_for(const weft__failure *f, int rc)
{
    /* A message recorded for a failure the task then handled, or replaced by another code, is
     * not the story of the code it ended with. */
    return f && f->message && f->code == rc ? f->message : NULL;
}

int weft__errors_group_holds(const weft__failure *f, int rc)
{
    for (size_t i = 0; f && i < f->ngroup; i++)
        if (f->group[i].pub.code == rc)
            return 1;
    return 0;
}

/* A group handed up goes with its failures' codes, one of which weft_fail_group returned, as a
 * message goes with its code: a task that then ends with another code (a cancel's, or one of its
 * own) handled those failures, or replaced them, and only that code is recorded. */
static void drop_stale_group(weft__failure *f, int rc)
{
    if (!f || !f->ngroup || weft__errors_group_holds(f, rc))
        return;
    for (size_t i = 0; i < f->ngroup; i++) {
        free(f->group[i].message);
        free(f->group[i].task);
        free(f->group[i].scope);
    }
    f->ngroup = 0;
}

void weft__errors_record(weft_scope *s, weft__task *t, int rc)
{
    weft__failure *f = t->failure;
    drop_stale_group(f, rc);
    const char *name = weft__task_name_of(t);
    weft__lock_acquire(&s->lock);
    if (!s->first_failure)
        s->first_failure = rc;
    if (f && f->ngroup) {
        /* A group handed up keeps each failure's origin; the first one is the task's code. */
        for (size_t i = 0; i < f->ngroup; i++) {
            weft__error_rec *g = &f->group[i];
            append_error(s, g->pub.code, g->pub.message, g->pub.task, g->pub.task_id, g->pub.scope);
        }
    } else {
        append_error(s, rc, weft__errors_message_for(f, rc), name, t->id, s->name);
    }
    weft__lock_release(&s->lock);
}

/* ---- readers ------------------------------------------------------------------------------ */

/* The readers may run on any thread while children still fail (see weft.h): the count with
 * acquire, and records below it only. */
size_t weft_scope_error_count(const weft_scope *s)
{
    return s ? atomic_load_explicit(&s->nerrors, memory_order_acquire) : 0;
}

const weft_error *weft_scope_error(const weft_scope *s, size_t i)
{
    if (!s || i >= atomic_load_explicit(&s->nerrors, memory_order_acquire))
        return NULL;
    return &error_at(s, i)->pub;
}

size_t weft_scope_error_count_code(const weft_scope *s, int code)
{
    size_t n = 0, count = weft_scope_error_count(s);
    for (size_t i = 0; i < count; i++)
        n += error_at(s, i)->pub.code == code;
    return n;
}

/* ---- failing ------------------------------------------------------------------------------ */

/* `r` holds a copy of `e` with strings of its own: the records of a scope share its strings
 * until the scope is released. */
static void copy_rec(weft__error_rec *r, const weft_error *e)
{
    r->pub = *e;
    r->message = dup_bounded(e->message);
    r->task = dup_bounded(e->task);
    r->scope = dup_bounded(e->scope);
    r->pub.message = r->message ? r->message : "";
    r->pub.task = r->task ? r->task : "";
    r->pub.scope = r->scope ? r->scope : "";
}

int weft_fail(int code, const char *fmt, ...)
{
    if (code == 0)
        code = -EINVAL;
    weft__task *t = weft__task_self();
    if (!t || !fmt)
        return code;
    char buf[WEFT_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int kept = errno; /* a conversion that fails sets it (EILSEQ); no switch in between */
    vsnprintf(buf, sizeof(buf), fmt, ap);
    errno = kept;
    va_end(ap);
    if (!t->failure) {
        t->failure = weft__alloc_calloc(1, sizeof(*t->failure));
        if (!t->failure)
            return code;
    }
    char *m = weft__alloc_strdup(buf);
    if (m) {
        free(t->failure->message);
        t->failure->message = m;
        t->failure->code = code;
    }
    return code;
}

int weft_fail_group(weft_scope *s, const int *handled, size_t n_handled)
{
    weft__task *t = weft__task_self();
    if (!s || s->state != WEFT__SCOPE_JOINED)
        return -EINVAL;
    if (!t)
        return -EPERM;
    /* Joined: no child fails into it any more. */
    size_t n = atomic_load_explicit(&s->nerrors, memory_order_relaxed), keep = 0;
    for (size_t i = 0; i < n; i++) {
        int handled_here = 0;
        for (size_t j = 0; handled && j < n_handled; j++)
            handled_here |= error_at(s, i)->pub.code == handled[j];
        keep += !handled_here;
    }
    /* The owner has seen what failed in it now: a scope joined only by the join of a scope it is
     * nested in is no longer forgotten (weft__scope_release_owned would hand it up again). */
    if (s->owner == t)
        s->result_unseen = 0;
    if (keep == 0)
        return 0;
    weft__failure *f = t->failure;
    if (!f) {
        f = weft__alloc_calloc(1, sizeof(*f));
        if (!f)
            return error_at(s, 0)->pub.code;
        t->failure = f;
    }
    weft__error_rec *g = weft__alloc_realloc(f->group, (f->ngroup + keep) * sizeof(*g));
    if (!g)
        return error_at(s, 0)->pub.code;
    f->group = g;
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        const weft__error_rec *e = error_at(s, i);
        int handled_here = 0;
        for (size_t j = 0; handled && j < n_handled; j++)
            handled_here |= e->pub.code == handled[j];
        if (handled_here)
            continue;
        weft__error_rec *r = &f->group[f->ngroup++];
        copy_rec(r, &e->pub);
        if (!first)
            first = r->pub.code;
    }
    return first;
}

int weft__errors_hand_up(weft__task *t, weft_scope *s, int own)
{
    /* Joined: no child fails into it any more. */
    size_t n = atomic_load_explicit(&s->nerrors, memory_order_relaxed);
    weft__failure *f = t->failure;
    if (!f) {
        f = weft__alloc_calloc(1, sizeof(*f));
        if (!f)
            return -ENOMEM;
        t->failure = f;
    }
    if (own)
        drop_stale_group(f, own);
    /* The task's own failure stays first, as the record its scope would have kept of it. */
    size_t mine = own && f->ngroup == 0;
    weft__error_rec *g = weft__alloc_realloc(f->group, (f->ngroup + mine + n) * sizeof(*g));
    if (!g)
        return -ENOMEM;
    f->group = g;
    if (mine) {
        weft_error e = {.code = own,
                        .message = weft__errors_message_for(f, own),
                        .task = weft__task_name_of(t),
                        .task_id = t->id,
                        .scope = t->scope->name};
        copy_rec(&f->group[f->ngroup++], &e);
    }
    for (size_t i = 0; i < n; i++)
        copy_rec(&f->group[f->ngroup++], &error_at(s, i)->pub);
    return 0;
}

/* ---- freeing ------------------------------------------------------------------------------ */

void weft__errors_free(weft_scope *s)
{
    size_t n = atomic_load_explicit(&s->nerrors, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        weft__error_rec *r = error_at(s, i);
        free(r->message);
        free(r->task);
        free(r->scope);
    }
    for (unsigned k = 0; k < WEFT__ERROR_SEGS && s->error_segs[k]; k++)
        free(s->error_segs[k]);
    free(s->error_segs);
    s->error_segs = NULL;
    atomic_store_explicit(&s->nerrors, 0, memory_order_relaxed);
}

void weft__errors_free_failure(weft__failure *f)
{
    free(f->message);
    for (size_t i = 0; i < f->ngroup; i++) {
        free(f->group[i].message);
        free(f->group[i].task);
        free(f->group[i].scope);
    }
    free(f->group);
    free(f);
}
