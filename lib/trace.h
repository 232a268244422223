// SPDX-License-Identifier: MIT
/*
 * The trace (trace.c): what each worker did, task by task, written as Chrome trace-event JSON.
 *
 * Each worker appends events to a buffer of its own, with no lock and no atomic: only the worker
 * writes it. An event is a few bytes (below): a kind, and a task id or a scope address as its
 * difference from the last of the buffer, so that a task of a fork-join program, five events,
 * takes about nine bytes. A full buffer is written out by its owner there and then, whole and
 * as it is (one write(2) of 256 KiB to a file of its own, unlinked at once, beside the trace), and
 * reused: so the memory a trace takes stays a buffer per worker, nothing is dropped, and no time
 * goes to formatting while tasks run. (Buffers kept in memory instead cost more: the kernel
 * clears every fresh page, and on a busy machine that took several times longer than the
 * write.) The worker's time in the write counts as one of the runtime's own waits (alloc.h),
 * never against its task for the watchdog. When the runtime stops, each worker's events, written
 * and left, become the JSON file; events lost (a full disk) are counted there, in the metadata.
 *
 * The clock. A read of the time-stamp counter costs tens of nanoseconds on some virtual
 * machines, more than the rest of an event: so an event reads it only when it is the first of a
 * group of WEFT__TRACE_STAMP_EVERY in its buffer, and at every switch (a park, a yield, a
 * resume, a task's end on its own stack); the events between get times spread evenly between
 * the two reads around them when the file is written. Within a run of a task, an
 * event's time is so exact to the time of a few events; the order is always exact.
 * Events of threads that are not workers (a foreign thread setting an event) are not recorded.
 *
 * Slices nest per worker thread: a task's run is a slice, the scopes it opened are slices inside
 * it, and a child a join runs inline is a slice inside its joiner's scope. When the stack they
 * all run on leaves the worker (a park, a yield), every open slice of that stack ends, innermost
 * first, and they begin again, outermost first, where it resumes (weft__trace_leave,
 * weft__trace_resume): each worker's slices stay properly nested, as the viewers want them. So
 * an end carries no id: the JSON writer takes it from the begin it closes, the innermost open on
 * that worker.
 *
 * Off (the default) a worker's `trace` is NULL, which the paths below test once; the paths that
 * fork-join programs take on every task (the spawn's and the join's common cases) test nothing
 * at all: they already leave for their general code when the runtime's `detours` is set, which
 * tracing sets (runtime.h).
 */
#ifndef WEFT_TRACE_H
#define WEFT_TRACE_H

#include <stdint.h>

#include "weft.h"

typedef struct weft__task weft__task;
typedef struct weft__worker weft__worker;

enum weft__trace_kind {
    /* 0 where an event would begin: the buffer holds no more. */
    WEFT__TR_TASK_BEGIN = 1, /* aux: 1 first run (start), 0 resumed */
    WEFT__TR_TASK_END,       /* aux: why (enum weft__trace_why); no id */
    WEFT__TR_SCOPE_BEGIN,    /* id: the scope's address */
    WEFT__TR_SCOPE_END,      /* no id */
    WEFT__TR_SPAWN,          /* id: the new task's */
    WEFT__TR_PARK,           /* id: the task; aux: enum weft__wait_on; an ARG follows: what */
    WEFT__TR_WAKE,           /* id: the woken task; aux: the WEFT__WOKEN_* reason */
    WEFT__TR_STEAL,          /* id: the task taken; aux: the victim's index */
    WEFT__TR_MIGRATE,        /* id: the task; aux: the worker it last ran on */
    WEFT__TR_NAME,  /* the name of the slice begun before: a byte of length, its bytes (<= 24) */
    WEFT__TR_ARG,   /* the argument of the event before it, as a varint */
    WEFT__TR_CLOCK, /* a reading of the clock and nothing else (a buffer's last) */
};

/*
 * An event's bytes: the first holds the kind (low 4 bits), its aux when under 7 (the next 3;
 * 7: the aux follows as a varint) and whether the event read the clock (the high bit). Then, in
 * order: the reading, as a zigzag varint of its difference from the buffer's last (from 0 for
 * the first); the aux, if it did not fit; the id, by kind: a task's as a zigzag varint of its
 * difference from the last task id of the buffer, a scope's address the same against the last
 * scope's in units of 64 bytes, none for an end. A varint is 7 bits a byte, low first, the high bit
 * set on all but the last. Each buffer starts afresh (no last reading, ids from 0), so it is read
 * alone.
 */
#define WEFT__TR_STAMPED 0x80
#define WEFT__TR_AUX_WIDE 7

enum weft__trace_why {
    WEFT__TR_WHY_END = 0,   /* the task ended */
    WEFT__TR_WHY_PARK = 1,  /* its stack parked */
    WEFT__TR_WHY_YIELD = 2, /* its stack yielded */
    WEFT__TR_WHY_UNRUN = 3, /* it ended without running: no stack could be had */
};

typedef struct weft__trace weft__trace;

/* A worker's buffer. */
typedef struct weft__trace_buf {
    uint8_t *p;     /* where the next event goes */
    uint8_t *end;   /* an event that begins at or before it fits, with what follows it */
    uint8_t *chunk; /* the buffer: a header (trace.c), then the events */
    uint32_t n;     /* events in it */
    uint64_t ticks; /* the clock's last reading in it (0: none yet) */
    uint64_t id;    /* the last task id in it */
    uint64_t scope; /* the last scope address in it */
    weft__trace *trace;
    unsigned worker;
    int spill_fd;     /* full buffers, as they are; -1 until the first */
    uint64_t spilled; /* buffers there */
    uint64_t spilled_events;
    uint64_t bytes; /* of events, written out and in the buffer: the figure of what a trace costs */
    uint64_t lost;  /* events lost (a failed write) */
} weft__trace_buf;

#define WEFT__TRACE_STAMP_EVERY 8

/** Opens the trace of a runtime of `nworkers` workers: the file `path` names is created (or
 *  emptied) now. 0 and *out, or a negative errno code (the file cannot be opened: open(2)'s
 *  code; -ENOMEM). */
int weft__trace_open(weft__trace **out, const char *path, unsigned nworkers);
/** Worker i's buffer. */
weft__trace_buf *weft__trace_buf_of(weft__trace *tr, unsigned i);
/** Writes what the buffers hold and the file's end, closes it and frees the trace. Once the
 *  workers are gone. Where a write of the file failed, says so once, through `report` (with
 *  `report_arg`, as weft_config.report) or, when it is NULL, on stderr. */
void weft__trace_close(weft__trace *tr, void (*report)(void *, int, const char *),
                       void *report_arg);

/** The clock events are stamped with: the time-stamp counter where there is one (a few
 *  nanoseconds, where a clock_gettime costs about 20), converted to the trace's microseconds
 *  when written. */
static inline uint64_t weft__trace_ticks(void)
{
#if defined(__x86_64__)
    return __builtin_ia32_rdtsc();
#elif defined(__aarch64__)
    uint64_t v;
    __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
    return v;
#else
    return (uint64_t)weft_now();
#endif
}

/** Writes out a full buffer (its owner, on its thread). */
void weft__trace_flush(weft__trace_buf *b);

/* Room an event needs at the most: itself (a kind, a reading, a wide aux, an id: 31 bytes), a
 * NAME (26) or an ARG (11) after it, and the CLOCK a flush ends the buffer with (11). */
#define WEFT__TRACE_ROOM 80

static inline uint8_t *weft__trace_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* A difference as an unsigned number small when the difference is, whatever its sign. */
static inline uint64_t weft__trace_zigzag(uint64_t d)
{
    return d << 1 ^ (uint64_t)((int64_t)d >> 63);
}

/** Appends one event to `b` (the caller's worker's); `stamp`: read the clock for it, whatever
 *  its place (a switch). An end's `id` is not kept. */
static inline void weft__trace_add_at(weft__trace_buf *b, uint32_t kind, uint64_t id, uint32_t aux,
                                      int stamp)
{
    if (__builtin_expect(b->p > b->end, 0))
        weft__trace_flush(b);
    uint8_t *first = b->p, *p = first + 1;
    uint32_t head = kind | (aux < WEFT__TR_AUX_WIDE ? aux : WEFT__TR_AUX_WIDE) << 4;
    if (stamp || b->n % WEFT__TRACE_STAMP_EVERY == 0) {
        uint64_t now = weft__trace_ticks();
        p = weft__trace_varint(p, weft__trace_zigzag(now - b->ticks));
        b->ticks = now;
        head |= WEFT__TR_STAMPED;
    }
    b->n++;
    *first = (uint8_t)head;
    if (aux >= WEFT__TR_AUX_WIDE)
        p = weft__trace_varint(p, aux);
    if (kind == WEFT__TR_SCOPE_BEGIN) {
        /* Scopes are aligned to 64 bytes (trace.c asserts it). */
        p = weft__trace_varint(p, weft__trace_zigzag((uint64_t)((int64_t)(id - b->scope) >> 6)));
        b->scope = id;
    } else if (kind != WEFT__TR_TASK_END && kind != WEFT__TR_SCOPE_END) {
        p = weft__trace_varint(p, weft__trace_zigzag(id - b->id));
        b->id = id;
    }
    b->p = p;
}

/** weft__trace_add_at, the clock read only as often as WEFT__TRACE_STAMP_EVERY says. */
static inline void weft__trace_add(weft__trace_buf *b, uint32_t kind, uint64_t id, uint32_t aux)
{
    weft__trace_add_at(b, kind, id, aux, 0);
}

/** The slices of `t` (running on `w`, which traces) and of the tasks it runs inside, with their
 *  scopes, end, innermost first: its stack leaves the worker for `why`. For a task that ended
 *  (WEFT__TR_WHY_END), its own slice ends as its end. */
void weft__trace_leave(weft__worker *w, weft__task *t, uint32_t why);
/** `t`, about to run on `w`, begins its slices again, outermost first (its first run: it starts;
 *  on another worker than the last: a migration is noted). */
void weft__trace_resume(weft__worker *w, weft__task *t);
/** A child `c` that `parent` runs inline, on `w`: starts inside parent's innermost scope. */
void weft__trace_inline_start(weft__worker *w, weft__task *parent, weft__task *c);
/** `t` ends on `w` while its stack stays (an inline child, or a record renewed for a deferred
 *  sibling). */
void weft__trace_task_end(weft__worker *w, weft__task *t, uint32_t why);
/** `t` starts on `w` in a record that just ended as another task (weft__task_renew). */
void weft__trace_task_start_here(weft__worker *w, weft__task *t);
/** A scope opened by the task running on `w`. */
void weft__trace_scope_open(weft__worker *w, weft_scope *s);
/** The join of `s` by its owner ended (the end of its slice). */
void weft__trace_scope_joined(weft__worker *w, weft_scope *s);

#endif
