// SPDX-License-Identifier: MIT
/*
 * The trace (trace.c): what each worker did, task by task, written as Chrome trace-event JSON.
 *
 * Each worker appends fixed-size events to a buffer of its own, with no lock and no atomic: only
 * the worker writes it. A full buffer is written out by its owner there and then, whole and as
 * it is (one write(2) of 2 MiB to a file of its own, unlinked at once, beside the trace), and
 * reused: so the memory a trace takes stays a buffer per worker, nothing is dropped, and no time
 * goes to formatting while tasks run. (Buffers kept in memory instead cost more: the kernel
 * clears every fresh page, about 80 bytes of them per task of a fork-join program, and on a
 * busy machine that took several times longer than the write.) The worker's time in the write
 * counts as one of the runtime's own waits (alloc.h), never against its task for the watchdog.
 * When the runtime stops, each worker's events, written and left, become the JSON file; events
 * lost (a full disk) are counted there, in the metadata.
 *
 * The clock. A read of the time-stamp counter costs tens of nanoseconds on some virtual
 * machines, more than the rest of an event: so an event reads it only when it is the first of a
 * group of WEFT__TRACE_STAMP_EVERY in its buffer, and at every switch (a park, a yield, a
 * resume, a task's end on its own stack); the events between get times spread evenly between
 * the two reads around them when the buffer fills or is written. Within a run of a task, an
 * event's time is so exact to the time of a few events; the order is always exact.
 * Events of threads that are not workers (a foreign thread setting an event) are not recorded.
 *
 * Slices nest per worker thread: a task's run is a slice, the scopes it opened are slices inside
 * it, and a child a join runs inline is a slice inside its joiner's scope. When the stack they
 * all run on leaves the worker (a park, a yield), every open slice of that stack ends, innermost
 * first, and they begin again, outermost first, where it resumes (weft__trace_leave,
 * weft__trace_resume): each worker's slices stay properly nested, as the viewers want them.
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
    WEFT__TR_TASK_BEGIN = 1, /* aux: 1 first run (start), 0 resumed */
    WEFT__TR_TASK_END,       /* aux: why (enum weft__trace_why) */
    WEFT__TR_SCOPE_BEGIN,    /* id: the scope's address */
    WEFT__TR_SCOPE_END,      /* id: the scope's address */
    WEFT__TR_SPAWN,          /* id: the new task's */
    WEFT__TR_PARK,           /* id: the task; aux: enum weft__wait_on; an ARG follows: what */
    WEFT__TR_WAKE,           /* id: the woken task; aux: the WEFT__WOKEN_* reason */
    WEFT__TR_STEAL,          /* id: the task taken; aux: the victim's index */
    WEFT__TR_MIGRATE,        /* id: the task; aux: the worker it last ran on */
    WEFT__TR_NAME,  /* id: 8 bytes of the name of the slice begun before (up to 3 in a row) */
    WEFT__TR_ARG,   /* id: the argument of the event before it */
    WEFT__TR_CLOCK, /* id: a whole reading of the clock (see `ts`) */
    WEFT__TR_PAD,   /* nothing: fills a buffer up before it is written out */
};

/* In `kind`: the event read the clock; `ts` holds the reading's low 32 bits. */
#define WEFT__TR_STAMPED 0x80

enum weft__trace_why {
    WEFT__TR_WHY_END = 0,   /* the task ended */
    WEFT__TR_WHY_PARK = 1,  /* its stack parked */
    WEFT__TR_WHY_YIELD = 2, /* its stack yielded */
    WEFT__TR_WHY_UNRUN = 3, /* it ended without running: no stack could be had */
};

/* One event: 16 bytes, which matters: writing the buffers out is half of what a trace costs. A
 * reading of the clock keeps its low 32 bits; when its high bits differ from the last a CLOCK
 * event with the whole reading goes first (every few seconds, and at the start of a buffer). */
typedef struct weft__trace_event {
    uint64_t id;
    uint32_t ts;
    uint8_t kind; /* enum weft__trace_kind, | WEFT__TR_STAMPED */
    uint8_t aux;
    uint16_t pad;
} weft__trace_event;

typedef struct weft__trace weft__trace;

/* A worker's buffer. */
typedef struct weft__trace_chunk weft__trace_chunk;

typedef struct weft__trace_buf {
    weft__trace_event *ev; /* cur's */
    uint32_t n, cap;
    weft__trace_chunk *cur;
    weft__trace *trace;
    unsigned worker;
    uint32_t hi;      /* the high bits of the clock's last reading (UINT32_MAX: none yet) */
    int spill_fd;     /* full buffers, as they are; -1 until the first */
    uint64_t spilled; /* events there */
    uint64_t lost;    /* events lost (no memory for a buffer, a failed write) */
} weft__trace_buf;

#define WEFT__TRACE_STAMP_EVERY 8

/** Opens the trace of a runtime of `nworkers` workers: the file `path` names is created (or
 *  emptied) now. 0 and *out, or a negative errno code (the file cannot be opened: open(2)'s
 *  code; -ENOMEM). */
int weft__trace_open(weft__trace **out, const char *path, unsigned nworkers);
/** Worker i's buffer. */
weft__trace_buf *weft__trace_buf_of(weft__trace *tr, unsigned i);
/** Writes what the buffers hold and the file's end, closes it and frees the trace. Once the
 *  workers are gone. */
void weft__trace_close(weft__trace *tr);

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

/* Room an event needs: a CLOCK, itself, an ARG or three NAMEs, and the CLOCK a flush ends with. */
#define WEFT__TRACE_ROOM 6

/** Appends one event to `b` (the caller's worker's); `stamp`: read the clock for it, whatever
 *  its place (a switch). */
static inline void weft__trace_add_at(weft__trace_buf *b, uint32_t kind, uint64_t id, uint32_t aux,
                                      int stamp)
{
    if (__builtin_expect(b->n + WEFT__TRACE_ROOM > b->cap, 0))
        weft__trace_flush(b);
    uint32_t lo = 0;
    if (stamp || b->n % WEFT__TRACE_STAMP_EVERY == 0) {
        uint64_t now = weft__trace_ticks();
        if (__builtin_expect((uint32_t)(now >> 32) != b->hi, 0)) {
            weft__trace_event *c = &b->ev[b->n++];
            c->id = now;
            c->ts = 0;
            c->kind = WEFT__TR_CLOCK;
            b->hi = (uint32_t)(now >> 32);
        }
        lo = (uint32_t)now;
        kind |= WEFT__TR_STAMPED;
    }
    weft__trace_event *e = &b->ev[b->n++];
    e->id = id;
    e->ts = lo;
    e->kind = (uint8_t)kind;
    e->aux = (uint8_t)aux;
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
