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
#include "json.h"
#include "sched.h"
#include "scope.h"
#include "sigpipe.h"
#include "task.h"

/* One buffer: 256 KiB, some thirty thousand tasks of a fork-join program, a write per few
 * milliseconds at full speed: rare next to the events it carries, and small enough to stay in
 * the CPU's cache while it fills and the kernel copies it (larger ones took no less time). */
#define CHUNK_BYTES ((size_t)256 << 10)

/* A scope's address is kept in units of its alignment (trace.h). */
_Static_assert(_Alignof(weft_scope) >= 64, "weft_scope is aligned to 64 bytes");

/* A buffer's start; its events follow. Written out with them, so that each buffer of a spill
 * file says what it holds. */
typedef struct chunk_head {
    uint64_t events; /* what weft__trace_buf.n counted: lost with it if it is */
    uint64_t bytes;  /* of events after the header */
} chunk_head;

static uint8_t *chunk_new(void)
{
    return weft__alloc_map(CHUNK_BYTES, 0);
}

static void chunk_free(uint8_t *c)
{
    if (c)
        weft__alloc_unmap(c, CHUNK_BYTES);
}

/* `b` empty, its buffer started afresh (trace.h: each is read alone). */
static void buf_reset(weft__trace_buf *b)
{
    b->p = b->chunk + sizeof(chunk_head);
    b->n = 0;
    b->ticks = 0;
    b->id = 0;
    b->scope = 0;
}

/* The most text one event takes (a begin with its name, escaped). */
#define EVENT_TEXT 512
/* The text of so many events is written at a time when the file is made. */
#define TEXT_BYTES ((size_t)8192 * EVENT_TEXT)

struct weft__trace {
    char *path;
    int fd;
    int pid;
    unsigned nworkers;
    uint64_t tick0;     /* the clock at the start, in ticks */
    double ns_per_tick; /* measured at the start */
    char *text;         /* TEXT_BYTES of JSON, for writing at the end */
    int write_error;    /* errno of the first write of the file that failed; 0: none */
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

/* Writes `n` bytes of the file. A failure (a full disk) cuts the trace short, and the program
 * goes on: its first error is kept, for weft__trace_close to report. */
static void write_all(weft__trace *tr, const char *p, size_t n)
{
    while (n && !tr->write_error) {
        ssize_t r = write(tr->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            tr->write_error = r < 0 ? errno : ENOSPC;
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

int weft__trace_open(weft__trace **out, const char *path, unsigned nworkers)
{
    weft__trace *tr = weft__alloc_calloc(1, sizeof(*tr) + nworkers * sizeof(weft__trace_buf));
    if (!tr)
        return -ENOMEM;
    tr->text = weft__alloc_malloc(TEXT_BYTES);
    int rc = tr->text ? 0 : -ENOMEM;
    for (unsigned i = 0; rc == 0 && i < nworkers; i++) {
        weft__trace_buf *b = &tr->bufs[i];
        b->chunk = chunk_new();
        b->trace = tr;
        b->worker = i;
        b->spill_fd = -1;
        if (!b->chunk) {
            rc = -ENOMEM;
            break;
        }
        b->end = b->chunk + CHUNK_BYTES - WEFT__TRACE_ROOM;
        buf_reset(b);
    }
    if (rc == 0 && !(tr->path = weft__alloc_strdup(path)))
        rc = -ENOMEM;
    if (rc == 0) {
        /* Not blocking while it opens: a FIFO that no process reads is refused (ENXIO), where a
         * blocking open would hold the start until one came. Blocking afterwards, so that a
         * pipe's reader paces the writes. */
        tr->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, 0644);
        if (tr->fd < 0)
            rc = -errno;
        else if (fcntl(tr->fd, F_SETFL, 0) != 0)
            rc = -errno;
        if (rc != 0 && tr->fd >= 0)
            close(tr->fd);
    }
    if (rc != 0) {
        for (unsigned i = 0; i < nworkers; i++)
            chunk_free(tr->bufs[i].chunk);
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
    sigset_t old;
    weft__sigpipe_block(&old); /* the file may be a FIFO whose reader is gone */
    write_all(tr, head, (size_t)n);
    weft__sigpipe_restore(&old, tr->write_error == EPIPE);
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

/* The head of an instant event on its thread's track, up to its first argument, the task's id:
 * `,"ph":"i","s":"t","name":"NAME","args":{"id":ID`. */
static char *put_instant(char *o, const char *name, uint64_t id)
{
    o = put_str(o, ",\"ph\":\"i\",\"s\":\"t\",\"name\":\"");
    o = put_str(o, name);
    o = put_str(o, "\",\"args\":{\"id\":");
    return put_u64(o, id);
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

static const char *wait_on_name(uint32_t on)
{
    static const char *const names[] = {
        [WEFT__ON_NOTHING] = "nothing",   [WEFT__ON_JOIN] = "join",
        [WEFT__ON_SLEEP] = "sleep",       [WEFT__ON_SEM] = "semaphore",
        [WEFT__ON_EVENT] = "event",       [WEFT__ON_CHAN] = "channel",
        [WEFT__ON_SELECT] = "select",     [WEFT__ON_FD_READ] = "fd-read",
        [WEFT__ON_FD_WRITE] = "fd-write", [WEFT__ON_FD_EITHER] = "fd",
        [WEFT__ON_BLOCKING] = "blocking", [WEFT__ON_FORK] = "fork",
    };
    return on < sizeof(names) / sizeof(names[0]) && names[on] ? names[on] : "?";
}

static const char *const why_names[] = {"end", "park", "yield", "unrun"};
static const char *const wake_names[] = {"?", "?", "woken", "cancel", "timer"};

/* An event read back whole. */
typedef struct event {
    uint64_t id;    /* for an end, the id (or address) of the begin it closes */
    uint64_t arg;   /* a park's ARG */
    uint64_t ticks; /* its time, once known */
    uint32_t aux;
    uint8_t kind;
    char name[25]; /* a begin's NAME */
} event;

/* What making the JSON keeps while it reads a worker's buffers, oldest first. An event is written
 * once its time is known (at the next reading of the clock: trace.h) and its NAME or ARG read
 * (at the next event). */
typedef struct reader {
    weft__trace *tr;
    unsigned worker;
    char *o;        /* the end of the text made and not yet written, in tr->text */
    uint64_t *open; /* the ids of the worker's open slices, innermost last */
    size_t depth, cap;
    int64_t last_ns; /* a track's times never go back, whatever the clocks of its CPUs did */
    uint64_t tick;   /* the buffer's last reading of the clock (0: none yet) */
    event head;      /* the last event that read the clock, if not written yet */
    int has_head;
    event wait[WEFT__TRACE_STAMP_EVERY]; /* the events after it, waiting for the next reading */
    uint32_t nwait;
} reader;

static void push_open(reader *r, uint64_t id)
{
    if (r->depth == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        uint64_t *open = weft__alloc_malloc(cap * sizeof(*open));
        if (open) {
            if (r->depth)
                memcpy(open, r->open, r->depth * sizeof(*open));
            free(r->open);
            r->open = open;
            r->cap = cap;
        }
    }
    if (r->depth < r->cap)
        r->open[r->depth] = id;
    r->depth++; /* past a failed allocation, counted alone: its end shows id 0 */
}

static uint64_t pop_open(reader *r)
{
    if (r->depth == 0)
        return 0; /* an end whose begin was lost */
    r->depth--;
    return r->depth < r->cap ? r->open[r->depth] : 0;
}

/* The text of `e` into the trace's text, written out when it is near full. */
static void put_event(reader *r, event *e)
{
    weft__trace *tr = r->tr;
    if ((size_t)(r->o - tr->text) > TEXT_BYTES - EVENT_TEXT) {
        write_all(tr, tr->text, (size_t)(r->o - tr->text));
        r->o = tr->text;
    }
    int64_t ns = (int64_t)((double)(int64_t)(e->ticks - tr->tick0) * tr->ns_per_tick);
    if (ns < r->last_ns)
        ns = r->last_ns;
    r->last_ns = ns;
    char *o = r->o;
    o = put_str(o, ",\n{\"pid\":");
    o = put_u64(o, (uint64_t)tr->pid);
    o = put_str(o, ",\"tid\":");
    o = put_u64(o, r->worker + 1);
    o = put_str(o, ",\"ts\":");
    o = put_u64(o, (uint64_t)ns / 1000);
    *o++ = '.';
    *o++ = (char)('0' + ns / 100 % 10);
    *o++ = (char)('0' + ns / 10 % 10);
    *o++ = (char)('0' + ns % 10);
    switch (e->kind) {
    case WEFT__TR_TASK_BEGIN:
        push_open(r, e->id);
        o = put_str(o, ",\"ph\":\"B\",\"cat\":\"task\",\"name\":\"");
        if (e->name[0]) {
            o = weft__json_escape(o, e->name, 24);
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
        o = put_u64(o, pop_open(r));
        o = put_str(o, ",\"run\":\"");
        o = put_str(o, why_names[e->aux < 4 ? e->aux : 0]);
        o = put_str(o, "\"}}");
        break;
    case WEFT__TR_SCOPE_BEGIN:
        push_open(r, e->id);
        o = put_str(o, ",\"ph\":\"B\",\"cat\":\"scope\",\"name\":\"scope");
        if (e->name[0]) {
            *o++ = ' ';
            o = weft__json_escape(o, e->name, 24);
        }
        o = put_str(o, "\",\"args\":{\"scope\":");
        o = put_hex(o, e->id);
        o = put_str(o, "}}");
        break;
    case WEFT__TR_SCOPE_END:
        o = put_str(o, ",\"ph\":\"E\",\"cat\":\"scope\",\"args\":{\"scope\":");
        o = put_hex(o, pop_open(r));
        o = put_str(o, "}}");
        break;
    case WEFT__TR_SPAWN:
        o = put_instant(o, "spawn", e->id);
        o = put_str(o, "}}");
        break;
    case WEFT__TR_PARK:
        o = put_instant(o, "park", e->id);
        o = put_str(o, ",\"on\":\"");
        o = put_str(o, wait_on_name(e->aux));
        if (e->aux >= WEFT__ON_FD_READ && e->aux <= WEFT__ON_FD_EITHER) {
            o = put_str(o, "\",\"fd\":");
            o = put_u64(o, e->arg);
        } else {
            o = put_str(o, "\",\"obj\":");
            o = put_hex(o, e->arg);
        }
        o = put_str(o, "}}");
        break;
    case WEFT__TR_WAKE:
        o = put_instant(o, "wake", e->id);
        o = put_str(o, ",\"reason\":\"");
        o = put_str(o, wake_names[e->aux < 5 ? e->aux : 0]);
        o = put_str(o, "\"}}");
        break;
    case WEFT__TR_STEAL:
        o = put_instant(o, "steal", e->id);
        o = put_str(o, ",\"from\":");
        o = put_u64(o, e->aux);
        o = put_str(o, "}}");
        break;
    case WEFT__TR_MIGRATE:
        o = put_instant(o, "migrate", e->id);
        o = put_str(o, ",\"from\":");
        o = put_u64(o, e->aux);
        o = put_str(o, ",\"to\":");
        o = put_u64(o, r->worker);
        o = put_str(o, "}}");
        break;
    default:
        o = put_str(o, ",\"ph\":\"i\",\"s\":\"t\",\"name\":\"?\"}");
        break;
    }
    r->o = o;
}

/* Writes the events waiting for a reading, at times spread evenly from the last reading to
 * `now` (trace.h, the clock). */
static void put_waiting(reader *r, uint64_t now)
{
    uint64_t t0 = r->tick ? r->tick : now, span = now > t0 ? now - t0 : 0;
    for (uint32_t k = 0; k < r->nwait; k++) {
        r->wait[k].ticks = t0 + span * (k + 1) / (r->nwait + 1);
        put_event(r, &r->wait[k]);
    }
    r->nwait = 0;
}

/* The next event read, `e`; `stamped`: it read the clock (a CLOCK: only that). */
static void arrive(reader *r, const event *e, int stamped)
{
    if (r->has_head) {
        put_event(r, &r->head);
        r->has_head = 0;
    }
    if (stamped) {
        put_waiting(r, e->ticks);
        r->tick = e->ticks;
        if (e->kind != WEFT__TR_CLOCK) {
            r->head = *e;
            r->has_head = 1;
        }
        return;
    }
    if (r->nwait == WEFT__TRACE_STAMP_EVERY) /* more than the worker leaves unstamped */
        put_waiting(r, r->tick);
    r->wait[r->nwait++] = *e;
}

/* The event a NAME or an ARG belongs to: the last read. */
static event *last_read(reader *r)
{
    return r->nwait ? &r->wait[r->nwait - 1] : r->has_head ? &r->head : NULL;
}

static uint64_t get_varint(const uint8_t **pp, const uint8_t *end)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (unsigned shift = 0; p < end && shift < 64; shift += 7) {
        uint8_t c = *p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            break;
    }
    *pp = p;
    return v;
}

static uint64_t unzigzag(uint64_t v)
{
    return v >> 1 ^ (0 - (v & 1));
}

/* Reads the events from `p` to `end`, one buffer's (trace.h has their bytes), and writes them. */
static void read_events(reader *r, const uint8_t *p, const uint8_t *end)
{
    uint64_t ticks = 0, id = 0, scope = 0;
    r->tick = 0;
    while (p < end && *p) {
        uint8_t first = *p++;
        event e = {.kind = first & 15, .aux = first >> 4 & 7};
        int stamped = first & WEFT__TR_STAMPED;
        if (e.kind > WEFT__TR_CLOCK)
            break; /* not an event: the rest cannot be read */
        if (stamped)
            ticks += unzigzag(get_varint(&p, end));
        if (e.aux == WEFT__TR_AUX_WIDE)
            e.aux = (uint32_t)get_varint(&p, end);
        e.ticks = ticks;
        event *to;
        switch (e.kind) {
        case WEFT__TR_NAME: {
            size_t len = p < end ? *p++ : 0;
            len = len < (size_t)(end - p) ? len : (size_t)(end - p);
            if ((to = last_read(r)) != NULL)
                memcpy(to->name, p, len < 24 ? len : 24);
            p += len;
            continue;
        }
        case WEFT__TR_ARG: {
            uint64_t v = get_varint(&p, end);
            if ((to = last_read(r)) != NULL)
                to->arg = v;
            continue;
        }
        case WEFT__TR_SCOPE_BEGIN:
            e.id = scope += unzigzag(get_varint(&p, end)) << 6;
            break;
        case WEFT__TR_TASK_END:
        case WEFT__TR_SCOPE_END:
        case WEFT__TR_CLOCK:
            break;
        default:
            e.id = id += unzigzag(get_varint(&p, end));
            break;
        }
        arrive(r, &e, stamped);
    }
    /* Those after the buffer's last reading get its time. */
    if (r->has_head) {
        put_event(r, &r->head);
        r->has_head = 0;
    }
    put_waiting(r, r->tick);
}

/* The buffers worker b wrote out, read back one at a time (each was written whole, with its
 * header, and ends with a reading of the clock: weft__trace_flush) and written to the trace. */
static void read_spill(reader *r, weft__trace_buf *b, uint8_t *scratch)
{
    uint64_t events = 0;
    for (uint64_t k = 0; k < b->spilled; k++) {
        ssize_t got = pread(b->spill_fd, scratch, CHUNK_BYTES, (off_t)(k * CHUNK_BYTES));
        if (got != (ssize_t)CHUNK_BYTES) {
            b->lost += b->spilled_events - events;
            return;
        }
        chunk_head h;
        memcpy(&h, scratch, sizeof(h));
        events += h.events;
        if (h.bytes > CHUNK_BYTES - sizeof(h)) {
            b->lost += h.events;
            continue;
        }
        read_events(r, scratch + sizeof(h), scratch + sizeof(h) + h.bytes);
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
    const uint8_t *p = b->chunk;
    size_t off = 0;
    while (b->spill_fd >= 0 && off < CHUNK_BYTES) {
        ssize_t r = write(b->spill_fd, p + off, CHUNK_BYTES - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        off += (size_t)r;
    }
    if (off == CHUNK_BYTES) {
        b->spilled++;
        b->spilled_events += b->n;
        return;
    }
    /* Cut a part-written buffer off: the file holds whole buffers only. */
    if (b->spill_fd >= 0 && off && ftruncate(b->spill_fd, (off_t)(b->spilled * CHUNK_BYTES)) != 0) {
        close(b->spill_fd);
        b->spill_fd = -1; /* what it held is lost too */
        b->lost += b->spilled_events;
        b->spilled = 0;
        b->spilled_events = 0;
    }
    b->lost += b->n;
}

void weft__trace_flush(weft__trace_buf *b)
{
    /* A last reading of the clock, so that every event of the buffer has one on either side
     * (weft__trace_add_at left room for it). */
    uint8_t *p = b->p;
    uint64_t now = weft__trace_ticks();
    *p++ = WEFT__TR_CLOCK | WEFT__TR_STAMPED;
    p = weft__trace_varint(p, weft__trace_zigzag(now - b->ticks));
    chunk_head h = {.events = b->n, .bytes = (uint64_t)(p - b->chunk) - sizeof(h)};
    memcpy(b->chunk, &h, sizeof(h));
    b->bytes += h.bytes;
    /* The runtime's own wait, not the task's (alloc.h). */
    weft__alloc_own_wait_mark();
    spill(b->trace, b);
    weft__alloc_own_wait_mark();
    buf_reset(b);
}

void weft__trace_close(weft__trace *tr, void (*report)(void *, int, const char *), void *report_arg)
{
    sigset_t old;
    weft__sigpipe_block(&old); /* the file may be a FIFO whose reader is gone */
    uint8_t *scratch = weft__alloc_malloc(CHUNK_BYTES);
    uint64_t lost = 0, bytes = 0, written = 0;
    reader r = {.tr = tr, .o = tr->text};
    for (unsigned i = 0; i < tr->nworkers; i++) {
        weft__trace_buf *b = &tr->bufs[i];
        r.worker = i;
        r.depth = 0;
        r.last_ns = 0;
        /* Oldest first: those written out, then the last buffer. */
        if (b->spill_fd >= 0) {
            if (scratch)
                read_spill(&r, b, scratch);
            else
                b->lost += b->spilled_events;
            close(b->spill_fd);
        }
        read_events(&r, b->chunk + sizeof(chunk_head), b->p);
        bytes += b->bytes + (uint64_t)(b->p - b->chunk) - sizeof(chunk_head);
        lost += b->lost;
        written += b->spilled;
    }
    free(r.open);
    free(scratch);
    char *o = r.o;
    for (unsigned i = 0; i < tr->nworkers; i++) {
        if ((size_t)(o - tr->text) > TEXT_BYTES - EVENT_TEXT) {
            write_all(tr, tr->text, (size_t)(o - tr->text));
            o = tr->text;
        }
        o += sprintf(o,
                     ",\n{\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"name\":\"thread_name\","
                     "\"args\":{\"name\":\"weft-w%u\"}}"
                     ",\n{\"ph\":\"M\",\"pid\":%d,\"tid\":%u,\"name\":\"thread_sort_index\","
                     "\"args\":{\"sort_index\":%u}}",
                     tr->pid, i + 1, i, tr->pid, i + 1, i);
    }
    o += sprintf(o,
                 "\n],\"metadata\":{\"weft-lost-events\":%llu,\"weft-trace-bytes\":%llu,"
                 "\"weft-buffers-written\":%llu}}\n",
                 (unsigned long long)lost, (unsigned long long)bytes, (unsigned long long)written);
    write_all(tr, tr->text, (size_t)(o - tr->text));
    if (close(tr->fd) != 0 && !tr->write_error)
        tr->write_error = errno; /* a file system that says so only now (NFS, a quota) */
    weft__sigpipe_restore(&old, tr->write_error == EPIPE);
    if (tr->write_error) {
        char line[512];
        snprintf(line, sizeof(line), "weft: trace %s: a write failed (%s): the file is cut short",
                 tr->path, strerror(tr->write_error));
        if (report)
            report(report_arg, WEFT_REPORT_TRACE, line);
        else
            fprintf(stderr, "%s\n", line);
    }
    for (unsigned i = 0; i < tr->nworkers; i++)
        chunk_free(tr->bufs[i].chunk);
    free(tr->path);
    free(tr->text);
    free(tr);
}

/* ---- what the runtime records ----------------------------------------------------------------
 */

/* A name (up to 24 bytes) after the begin just added (weft__trace_add_at leaves room for it). */
static void put_name(weft__trace_buf *b, const char *name)
{
    size_t len = strnlen(name, 24);
    uint8_t *p = b->p;
    *p++ = WEFT__TR_NAME;
    *p++ = (uint8_t)len;
    memcpy(p, name, len);
    b->p = p + len;
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
    if (t->joiner)
        begin_chain(b, t->joiner);
    begin_task(b, t, 0, t->joiner == NULL);
    begin_scopes(b, t->owned);
}

void weft__trace_leave(weft__worker *w, weft__task *t, uint32_t why)
{
    weft__trace_buf *b = w->trace;
    int stamp = 1; /* the first event of a switch reads the clock (trace.h) */
    if (why == WEFT__TR_WHY_PARK) {
        weft__trace_add_at(b, WEFT__TR_PARK, t->id, t->wait_on, 1);
        /* What on, after it (weft__trace_add_at leaves room). */
        uint8_t *p = b->p;
        *p++ = WEFT__TR_ARG;
        b->p = weft__trace_varint(p, (uint64_t)(uintptr_t)t->wait_obj);
        stamp = 0;
    }
    for (weft__task *x = t; x; x = x->joiner) {
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
        t->joiner = NULL;
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
    (void)parent; /* its joiner, noted already (weft__join_run_child) */
    c->flags |= WEFT__TASK_TRACE_RUN;
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
