// SPDX-License-Identifier: MIT
/*
 * The trace: per-worker event buffers, and the Chrome trace-event JSON they are written as. The
 * events and how slices nest are in trace.h; the format, and how to open a file, in
 * lib/README.md (Tracing).
 */
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "sched.h"
#include "scope.h"
#include "task.h"

/* One buffer: 2 MiB, mapped for a huge page, tens of milliseconds of a fork-join program at
 * full speed: a write per buffer is rare next to the events it carries. */
#define CHUNK_BYTES ((size_t)2 << 20)
#define BUF_EVENTS ((uint32_t)((CHUNK_BYTES - 16) / sizeof(weft__trace_event)))
/* Events formatted to text at a time when the file is written. */
#define TEXT_EVENTS 8192

struct weft__trace_chunk {
    weft__trace_chunk *next;
    uint64_t n;
    weft__trace_event ev[BUF_EVENTS];
};

static weft__trace_chunk *chunk_new(void)
{
    return weft__alloc_map(CHUNK_BYTES, 1);
}

static void chunk_free(weft__trace_chunk *c)
{
    if (c)
        weft__alloc_unmap(c, CHUNK_BYTES);
}
/* The most text one event takes (a begin with its name, escaped, counts as one). */
#define EVENT_TEXT 512

struct weft__trace {
    char *path;
    int fd;
    int pid;
    unsigned nworkers;
    uint64_t tick0;     /* the clock at the start, in ticks */
    double ns_per_tick; /* measured at the start */
    char *text;         /* TEXT_EVENTS events' worth of JSON, for writing at the end */
    weft__trace_buf bufs[];
};

/* Ticks per nanosecond, measured against CLOCK_MONOTONIC over a millisecond. */
static double measure_ns_per_tick(uint64_t *tick0)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    uint64_t t0 = weft__trace_ticks();
    *tick0 = t0;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &b);
        int64_t ns = (b.tv_sec - a.tv_sec) * WEFT_SEC + (b.tv_nsec - a.tv_nsec);
        uint64_t t1 = weft__trace_ticks();
        if (ns >= WEFT_MSEC && t1 > t0)
            return (double)ns / (double)(t1 - t0);
    }
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return; /* a full disk: the trace is cut short, the program goes on */
        p += r;
        n -= (size_t)r;
    }
}

int weft__trace_open(weft__trace **out, const char *path, unsigned nworkers)
{
    weft__trace *tr = weft__alloc_calloc(1, sizeof(*tr) + nworkers * sizeof(weft__trace_buf));
    if (!tr)
        return -ENOMEM;
    tr->text = weft__alloc_malloc((size_t)TEXT_EVENTS * EVENT_TEXT);
    int rc = tr->text ? 0 : -ENOMEM;
    for (unsigned i = 0; rc == 0 && i < nworkers; i++) {
        weft__trace_buf *b = &tr->bufs[i];
        b->cur = chunk_new();
        b->ev = b->cur ? b->cur->ev : NULL;
        b->cap = BUF_EVENTS;
        b->trace = tr;
        b->worker = i;
        b->spill_fd = -1;
        b->hi = UINT32_MAX;
        if (!b->ev)
            rc = -ENOMEM;
    }
    if (rc == 0 && !(tr->path = weft__alloc_strdup(path)))
        rc = -ENOMEM;
    if (rc == 0) {
        tr->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (tr->fd < 0)
            rc = -errno;
    }
    if (rc != 0) {
        for (unsigned i = 0; i < nworkers; i++)
            chunk_free(tr->bufs[i].cur);
        free(tr->path);
        free(tr->text);
        free(tr);
        return rc;
    }
    tr->nworkers = nworkers;
    tr->pid = (int)getpid();
    tr->ns_per_tick = measure_ns_per_tick(&tr->tick0);
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n"
                     "{\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"name\":\"process_name\","
                     "\"args\":{\"name\":\"weft\"}}",
                     tr->pid);
    write_all(tr->fd, head, (size_t)n);
    *out = tr;
    return 0;
}

weft__trace_buf *weft__trace_buf_of(weft__trace *tr, unsigned i)
{
    return &tr->bufs[i];
}

/* ---- JSON ------------------------------------------------------------------------------------ */

/* The text is built by hand: with printf a trace of a million tasks took tens of seconds to
 * write. */
static char *put_str(char *o, const char *s)
{
    while (*s)
        *o++ = *s++;
    return o;
}

static char *put_u64(char *o, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *o++ = tmp[--n];
    return o;
}

static char *put_hex(char *o, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = digits[v & 15];
        v >>= 4;
    } while (v);
    o = put_str(o, "\"0x");
    while (n)
        *o++ = tmp[--n];
    *o++ = '"';
    return o;
}

/* `s` (at most `max` bytes, perhaps not terminated) as the inside of a JSON string. */
static char *put_escaped(char *o, const char *s, size_t max)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < max && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            o = put_str(o, "\\u00");
            *o++ = digits[c >> 4];
            *o++ = digits[c & 15];
        } else {
            *o++ = (char)c;
        }
    }
    return o;
}

static const char *wait_on_name(uint32_t on)
{
    static const char *const names[] = {
        [WEFT__ON_NOTHING] = "nothing",   [WEFT__ON_JOIN] = "join",
        [WEFT__ON_SLEEP] = "sleep",       [WEFT__ON_SEM] = "semaphore",
        [WEFT__ON_EVENT] = "event",       [WEFT__ON_CHAN] = "channel",
        [WEFT__ON_SELECT] = "select",     [WEFT__ON_FD_READ] = "fd-read",
        [WEFT__ON_FD_WRITE] = "fd-write", [WEFT__ON_FD_EITHER] = "fd",
        [WEFT__ON_BLOCKING] = "blocking",
    };
    return on < sizeof(names) / sizeof(names[0]) && names[on] ? names[on] : "?";
}

static const char *const why_names[] = {"end", "park", "yield", "unrun"};
static const char *const wake_names[] = {"?", "?", "woken", "cancel", "timer"};

/* The text of event i of the `n` at `ev` (of worker `worker`, at times `at`: event_times), into
 * o; returns the end of the text and sets *used to the events consumed (an event takes the NAMEs
 * or the ARG after it with it). */
static char *put_event(const weft__trace *tr, const weft__trace_event *ev, const uint64_t *at,
                       uint32_t n, unsigned worker, uint32_t i, char *o, uint32_t *used)
{
    const weft__trace_event *e = &ev[i];
    uint32_t kind = e->kind & ~WEFT__TR_STAMPED;
    char name[25] = {0};
    uint64_t arg = 0;
    *used = 1;
    for (uint32_t k = i + 1; k < n && k < i + 4 && ev[k].kind == WEFT__TR_NAME; k++, (*used)++)
        memcpy(name + 8 * (k - i - 1), &ev[k].id, 8);
    if (i + 1 < n && ev[i + 1].kind == WEFT__TR_ARG) {
        arg = ev[i + 1].id;
        *used = 2;
    }
    if (kind == WEFT__TR_NAME || kind == WEFT__TR_ARG || kind == WEFT__TR_CLOCK ||
        kind == WEFT__TR_PAD)
        return o; /* written with the event they belong to, or not at all */
    int64_t ns = (int64_t)((double)(int64_t)(at[i] - tr->tick0) * tr->ns_per_tick);
    if (ns < 0)
        ns = 0;
    o = put_str(o, ",\n{\"pid\":");
    o = put_u64(o, (uint64_t)tr->pid);
    o = put_str(o, ",\"tid\":");
    o = put_u64(o, worker + 1);
    o = put_str(o, ",\"ts\":");
    o = put_u64(o, (uint64_t)ns / 1000);
    *o++ = '.';
    *o++ = (char)('0' + ns / 100 % 10);
    *o++ = (char)('0' + ns / 10 % 10);
    *o++ = (char)('0' + ns % 10);
    switch (kind) {
    case WEFT__TR_TASK_BEGIN:
        o = put_str(o, ",\"ph\":\"B\",\"cat\":\"task\",\"name\":\"");
        if (name[0]) {
            o = put_escaped(o, name, 24);
        } else {
            o = put_str(o, "task-");
            o = put_u64(o, e->id);
        }
        o = put_str(o, "\",\"args\":{\"id\":");
        o = put_u64(o, e->id);
        o = put_str(o, e->aux ? ",\"run\":\"start\"}}" : ",\"run\":\"resume\"}}");
        break;
    case WEFT__TR_TASK_END:
        o = put_str(o, ",\"ph\":\"E\",\"cat\":\"task\",\"args\":{\"id\":");
        o = put_u64(o, e->id);
        o = put_str(o, ",\"run\":\"");
        o = put_str(o, why_names[e->aux < 4 ? e->aux : 0]);
        o = put_str(o, "\"}}");
        break;
    case WEFT__TR_SCOPE_BEGIN:
        o = put_str(o, ",\"ph\":\"B\",\"cat\":\"scope\",\"name\":\"scope");
        if (name[0]) {
            *o++ = ' ';
            o = put_escaped(o, name, 24);
        }
        o = put_str(o, "\",\"args\":{\"scope\":");
        o = put_hex(o, e->id);
        o = put_str(o, "}}");
        break;
    case WEFT__TR_SCOPE_END:
        o = put_str(o, ",\"ph\":\"E\",\"cat\":\"scope\",\"args\":{\"scope\":");
        o = put_hex(o, e->id);
        o = put_str(o, "}}");
        break;
    case WEFT__TR_SPAWN:
        o = put_str(o, ",\"ph\":\"i\",\"s\":\"t\",\"name\":\"spawn\",\"args\":{\"id\":");
        o = put_u64(o, e->id);
        o = put_str(o, "}}");
        break;
    case WEFT__TR_PARK:
        o = put_str(o, ",\"ph\":\"i\",\"s\":\"t\",\"name\":\"park\",\"args\":{\"id\":");
        o = put_u64(o, e->id);
        o = put_str(o, ",\"on\":\"");
        o = put_str(o, wait_on_name(e->aux));
        if (e->aux >= WEFT__ON_FD_READ && e->aux <= WEFT__ON_FD_EITHER) {
            o = put_str(o, "\",\"fd\":");
            o = put_u64(o, arg);
        } else {
            o = put_str(o, "\",\"obj\":");
            o = put_hex(o, arg);
        }
        o = put_str(o, "}}");
        break;
    case WEFT__TR_WAKE:
        o = put_str(o, ",\"ph\":\"i\",\"s\":\"t\",\"name\":\"wake\",\"args\":{\"id\":");
        o = put_u64(o, e->id);
        o = put_str(o, ",\"reason\":\"");
        o = put_str(o, wake_names[e->aux < 5 ? e->aux : 0]);
        o = put_str(o, "\"}}");
        break;
    case WEFT__TR_STEAL:
        o = put_str(o, ",\"ph\":\"i\",\"s\":\"t\",\"name\":\"steal\",\"args\":{\"id\":");
        o = put_u64(o, e->id);
        o = put_str(o, ",\"from\":");
        o = put_u64(o, e->aux);
        o = put_str(o, "}}");
        break;
    case WEFT__TR_MIGRATE:
        o = put_str(o, ",\"ph\":\"i\",\"s\":\"t\",\"name\":\"migrate\",\"args\":{\"id\":");
        o = put_u64(o, e->id);
        o = put_str(o, ",\"from\":");
        o = put_u64(o, e->aux);
        o = put_str(o, ",\"to\":");
        o = put_u64(o, worker);
        o = put_str(o, "}}");
        break;
    default:
        o = put_str(o, ",\"ph\":\"i\",\"s\":\"t\",\"name\":\"?\"}");
        break;
    }
    return o;
}

/* The times of the `n` events at `ev` (ticks) into `at`: a reading where an event has one (a
 * CLOCK's whole, a stamped event's low bits under the high bits before it, carried in *hi from
 * the buffer before), spread evenly between the readings around the others (trace.h, the
 * clock); those after the last reading get its time. */
static void event_times(const weft__trace_event *ev, uint32_t n, uint64_t *at, uint32_t *hi)
{
    uint32_t last = UINT32_MAX; /* the last event with a reading */
    for (uint32_t i = 0; i < n; i++) {
        at[i] = 0;
        if (ev[i].kind == WEFT__TR_CLOCK) {
            at[i] = ev[i].id;
            *hi = (uint32_t)(ev[i].id >> 32);
        } else if (ev[i].kind & WEFT__TR_STAMPED) {
            at[i] = (uint64_t)*hi << 32 | ev[i].ts;
        } else {
            continue;
        }
        if (last != UINT32_MAX && i > last + 1) {
            uint64_t t0 = at[last], span = at[i] > t0 ? at[i] - t0 : 0;
            for (uint32_t k = last + 1; k < i; k++)
                at[k] = t0 + span * (k - last) / (i - last);
        }
        last = i;
    }
    for (uint32_t k = last == UINT32_MAX ? 0 : last + 1; last != UINT32_MAX && k < n; k++)
        at[k] = at[last];
}

/* Writes the `n` events at `ev` of worker `worker` to the trace file; `at` has room for their
 * times, `hi` carries the clock's high bits from one buffer of the worker to the next. */
static void write_events(weft__trace *tr, const weft__trace_event *ev, uint32_t n, unsigned worker,
                         uint64_t *at, uint32_t *hi)
{
    event_times(ev, n, at, hi);
    char *o = tr->text;
    uint32_t used, since = 0;
    for (uint32_t i = 0; i < n; i += used, since += used) {
        if (since >= TEXT_EVENTS - 2) {
            write_all(tr->fd, tr->text, (size_t)(o - tr->text));
            o = tr->text;
            since = 0;
        }
        o = put_event(tr, ev, at, n, worker, i, o, &used);
    }
    write_all(tr->fd, tr->text, (size_t)(o - tr->text));
}

/* The events worker b wrote out, read back a buffer at a time (each was written whole, begins
 * and ends with a read of the clock: weft__trace_flush) and written to the trace file. */
static void write_spill(weft__trace *tr, weft__trace_buf *b, weft__trace_event *scratch,
                        uint64_t *at, uint32_t *hi)
{
    for (uint64_t done = 0; done + BUF_EVENTS <= b->spilled; done += BUF_EVENTS) {
        size_t bytes = BUF_EVENTS * sizeof(*scratch);
        ssize_t r = pread(b->spill_fd, scratch, bytes, (off_t)(done * sizeof(*scratch)));
        if (r != (ssize_t)bytes) {
            b->lost += b->spilled - done;
            return;
        }
        write_events(tr, scratch, BUF_EVENTS, b->worker, at, hi);
    }
}

/* The first full buffer of `b` opens its spill file: beside the trace, unlinked at once. */
static int open_spill(weft__trace *tr, weft__trace_buf *b)
{
    enum { UNIQUE = 6 }; /* mkostemp replaces the name's last six characters, which must be 'X' */
    char name[4096];
    int n = snprintf(name, sizeof(name), "%s.w%u.", tr->path, b->worker);
    if (n < 0 || (size_t)n + UNIQUE >= sizeof(name))
        return -1;
    memset(name + n, 'X', UNIQUE);
    name[n + UNIQUE] = '\0';
    int fd = mkostemp(name, O_CLOEXEC);
    if (fd >= 0)
        unlink(name);
    return fd;
}

/* Writes the full buffer of `b` to its spill file, whole; what cannot be written is lost. */
static void spill(weft__trace *tr, weft__trace_buf *b)
{
    if (b->spill_fd < 0)
        b->spill_fd = open_spill(tr, b);
    size_t bytes = b->n * sizeof(weft__trace_event);
    const char *p = (const char *)b->ev;
    size_t off = 0;
    while (b->spill_fd >= 0 && off < bytes) {
        ssize_t r = write(b->spill_fd, p + off, bytes - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        off += (size_t)r;
    }
    if (off == bytes) {
        b->spilled += b->n;
        return;
    }
    /* Cut a part-written buffer off: the file holds whole buffers only. */
    if (b->spill_fd >= 0 && off &&
        ftruncate(b->spill_fd, (off_t)(b->spilled * sizeof(weft__trace_event))) != 0) {
        close(b->spill_fd);
        b->spill_fd = -1; /* what it held is lost too */
        b->lost += b->spilled;
        b->spilled = 0;
    }
    b->lost += b->n;
}

void weft__trace_flush(weft__trace_buf *b)
{
    /* A last reading of the clock, so that every event of the buffer has one on either side;
     * then the buffer is made whole, so that it is read back as written. */
    weft__trace_event *c = &b->ev[b->n++];
    c->id = weft__trace_ticks();
    c->ts = 0;
    c->kind = WEFT__TR_CLOCK;
    b->hi = UINT32_MAX; /* the next buffer starts with a whole reading */
    while (b->n < b->cap) {
        weft__trace_event *e = &b->ev[b->n++];
        e->ts = 0;
        e->kind = WEFT__TR_PAD;
    }
    /* The runtime's own wait, not the task's (alloc.h). */
    weft__alloc_own_wait_mark();
    spill(b->trace, b);
    weft__alloc_own_wait_mark();
    b->n = 0;
}

void weft__trace_close(weft__trace *tr)
{
    weft__trace_event *scratch = weft__alloc_malloc(BUF_EVENTS * sizeof(*scratch));
    uint64_t *at = weft__alloc_malloc(BUF_EVENTS * sizeof(*at));
    uint64_t lost = 0;
    for (unsigned i = 0; i < tr->nworkers; i++) {
        weft__trace_buf *b = &tr->bufs[i];
        uint32_t hi = 0;
        /* Oldest first: those written out, then the last buffer. */
        if (b->spill_fd >= 0) {
            if (scratch && at)
                write_spill(tr, b, scratch, at, &hi);
            else
                b->lost += b->spilled;
            close(b->spill_fd);
        }
        if (at)
            write_events(tr, b->ev, b->n, i, at, &hi);
        else
            b->lost += b->n;
        lost += b->lost;
    }
    free(at);
    free(scratch);
    char *o = tr->text;
    for (unsigned i = 0; i < tr->nworkers; i++)
        o += sprintf(o,
                     ",\n{\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"name\":\"thread_name\","
                     "\"args\":{\"name\":\"weft-w%u\"}}"
                     ",\n{\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"name\":\"thread_sort_index\","
                     "\"args\":{\"sort_index\":%u}}",
                     tr->pid, i + 1, i, tr->pid, i + 1, i);
    o += sprintf(o, "\n],\"metadata\":{\"weft-lost-events\":%llu}}\n", (unsigned long long)lost);
    write_all(tr->fd, tr->text, (size_t)(o - tr->text));
    close(tr->fd);
    for (unsigned i = 0; i < tr->nworkers; i++)
        chunk_free(tr->bufs[i].cur);
    free(tr->path);
    free(tr->text);
    free(tr);
}

/* ---- what the runtime records ----------------------------------------------------------------
 */

/* A name (up to 24 bytes) in the slots after the begin just added (weft__trace_add leaves room
 * for three). */
static void put_name(weft__trace_buf *b, const char *name)
{
    size_t len = strnlen(name, 24);
    for (size_t at = 0; at < len; at += 8) {
        weft__trace_event *e = &b->ev[b->n++];
        char part[8] = {0};
        memcpy(part, name + at, len - at < 8 ? len - at : 8);
        memcpy(&e->id, part, 8);
        e->ts = 0;
        e->kind = WEFT__TR_NAME;
        e->aux = 0;
    }
}

static void begin_task(weft__trace_buf *b, weft__task *t, int first, int stamp)
{
    weft__trace_add_at(b, WEFT__TR_TASK_BEGIN, t->id, (uint32_t)first, stamp);
    if (t->name[0])
        put_name(b, t->name);
}

static void begin_scope(weft__trace_buf *b, weft_scope *s)
{
    weft__trace_add(b, WEFT__TR_SCOPE_BEGIN, (uint64_t)(uintptr_t)s, 0);
    if (s->name[0])
        put_name(b, s->name);
}

/* Begins the slices of the traced scopes of `t` still open, oldest first (its list is newest
 * first: the recursion turns it round; its length is the task's nesting of scopes). */
static void begin_scopes(weft__trace_buf *b, weft_scope *s)
{
    if (!s)
        return;
    begin_scopes(b, s->prev_owned);
    if (s->trace_open)
        begin_scope(b, s);
}

static void begin_chain(weft__trace_buf *b, weft__task *t)
{
    if (t->trace_parent)
        begin_chain(b, t->trace_parent);
    begin_task(b, t, 0, t->trace_parent == NULL);
    begin_scopes(b, t->owned);
}

void weft__trace_leave(weft__worker *w, weft__task *t, uint32_t why)
{
    weft__trace_buf *b = w->trace;
    int stamp = 1; /* the first event of a switch reads the clock (trace.h) */
    if (why == WEFT__TR_WHY_PARK) {
        weft__trace_add_at(b, WEFT__TR_PARK, t->id, t->wait_on, 1);
        /* What on, in the slot after it (weft__trace_add_at leaves room). */
        weft__trace_event *a = &b->ev[b->n++];
        a->id = (uint64_t)(uintptr_t)t->wait_obj;
        a->ts = 0;
        a->kind = WEFT__TR_ARG;
        a->aux = 0;
        stamp = 0;
    }
    for (weft__task *x = t; x; x = x->trace_parent) {
        for (weft_scope *s = x->owned; s; s = s->prev_owned) {
            if (s->trace_open) {
                weft__trace_add_at(b, WEFT__TR_SCOPE_END, (uint64_t)(uintptr_t)s, 0, stamp);
                stamp = 0;
            }
        }
        weft__trace_add_at(b, WEFT__TR_TASK_END, x->id, why, stamp);
        stamp = 0;
    }
}

void weft__trace_resume(weft__worker *w, weft__task *t)
{
    weft__trace_buf *b = w->trace;
    if (!(t->flags & WEFT__TASK_TRACE_RUN)) {
        t->flags |= WEFT__TASK_TRACE_RUN;
        t->trace_parent = NULL;
        t->trace_worker = w->index;
        begin_task(b, t, 1, 1);
        return;
    }
    if (t->trace_worker != w->index) {
        weft__trace_add(b, WEFT__TR_MIGRATE, t->id, t->trace_worker);
        t->trace_worker = w->index;
    }
    begin_chain(b, t);
}

void weft__trace_inline_start(weft__worker *w, weft__task *parent, weft__task *c)
{
    c->flags |= WEFT__TASK_TRACE_RUN;
    c->trace_parent = parent;
    c->trace_worker = w->index;
    begin_task(w->trace, c, 1, 0);
}

void weft__trace_task_end(weft__worker *w, weft__task *t, uint32_t why)
{
    weft__trace_add(w->trace, WEFT__TR_TASK_END, t->id, why);
}

void weft__trace_task_start_here(weft__worker *w, weft__task *t)
{
    begin_task(w->trace, t, 1, 0);
}

void weft__trace_scope_open(weft__worker *w, weft_scope *s)
{
    s->trace_open = 1;
    begin_scope(w->trace, s);
}

void weft__trace_scope_joined(weft__worker *w, weft_scope *s)
{
    if (!s->trace_open)
        return;
    s->trace_open = 0;
    weft__trace_add(w->trace, WEFT__TR_SCOPE_END, (uint64_t)(uintptr_t)s, 0);
}
