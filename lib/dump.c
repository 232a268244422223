// SPDX-License-Identifier: MIT
/*
 * The dump of a runtime's tree (weft_dump): every live task, the scope it was spawned into and
 * the scopes it opened, as text for a person or as JSON for a program.
 *
 * Nothing stops for it. The dump reads the task records where they live, in the runtime's chunks
 * (weft__records_walk), and the scope records they point to, without a lock and while the
 * workers go on: neither kind of record is given back to the system while the runtime lives
 * (lib/README.md), so a pointer read from a record that changed meanwhile still points to a
 * record of the right type. The worst a race does is show a task as it was a moment before or
 * leave it out (a record whose id or free mark changed while it was read is left out), or show
 * a scope's fields from two moments. What the runtime does not own the dump never follows:
 * semaphores, events, channels and select clauses are the program's memory, and only their
 * addresses are written. The stop-the-world alternative was rejected: a task that runs without
 * a suspension point (the very one a person dumps to find) would hold it for ever.
 *
 * The one lock is `dump_lock` of the runtime, held by a dump for its whole length and by the
 * runtime's end before it frees the workers and the records (weft__dump_unregister): no worker
 * ever waits for it. The reads are plain loads kept out of ThreadSanitizer's sight (NO_TSAN):
 * they race with the runtime's writes by design.
 *
 * The dump signal: its handler writes the signal's number to a pipe (write(2) is async-signal-
 * safe, and nothing else is done there); the process's dump thread reads it and dumps, as
 * text on stderr, every runtime that asked for that signal.
 */
#include "dump.h"
#include "errno_keep.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "defer.h"
#include "json.h"
#include "records.h"
#include "runtime.h"
#include "sched.h"
#include "scope.h"
#include "sigpipe.h"
#include "task.h"

#define NO_TSAN __attribute__((no_sanitize("thread")))
/* A racy read of a field another thread writes (see above). */
#define RD(x) (*(const volatile __typeof__(x) *)&(x))
#define RD_U32(x) (*(const volatile uint32_t *)&(x))
#define RD_INT(x) (*(const volatile int *)&(x))

/* What the dump took of one task. */
typedef struct dtask {
    const weft__task *rec;
    const weft_scope *scope;
    const weft__task *host;
    const weft__task *joiner; /* an inline child's joiner, else NULL */
    const weft_scope *owned;
    const void *obj;
    uint64_t id;
    weft_time parked_at, until;
    uint32_t wait, flags;
    int on;
    int worker;   /* running on that worker, else -1 */
    int scope_ix; /* its scope's index, -1 when not found */
    int hosting;  /* an inline child runs (or waits) on its stack: that child's index, else -1 */
    char name[WEFT__TASK_NAME_MAX];
} dtask;

/* And of one scope. */
typedef struct dscope {
    const weft_scope *rec;
    const weft_scope *parent;
    const weft__task *owner;
    const weft_scope *prev_owned;
    weft_time own_deadline;
    size_t deferred;
    unsigned max_running, running;
    int state, policy, shield, cancel_code, cancel;
    int parent_ix, owner_ix; /* -1 when none or not found */
    char name[32];
} dscope;

/* Pointer -> index, open addressing. */
typedef struct ptrmap {
    const void **keys;
    int *vals;
    size_t cap; /* a power of two */
    size_t n;
} ptrmap;

typedef struct dump {
    weft_runtime *rt; /* read while the dump holds its lock only: the writing reads the rest */
    const weft_scope *root;
    unsigned nworkers;
    int worker_task[WEFT__MAX_WORKERS]; /* the index of the task each worker runs, or -1 */
    int err;
    dtask *tasks;
    size_t ntasks, task_cap;
    dscope *scopes;
    size_t nscopes, scope_cap;
    ptrmap task_map, scope_map;
    weft_time now;
    struct dump *next; /* the dump thread's list of dumps to write */
} dump;

static size_t hash_ptr(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static int map_grow(ptrmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    const void **keys = weft__alloc_calloc(cap, sizeof(*keys));
    int *vals = weft__alloc_malloc(cap * sizeof(*vals));
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = hash_ptr(m->keys[i]) & (cap - 1);
        while (keys[j])
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

static int map_get(const ptrmap *m, const void *p)
{
    if (!p || !m->cap)
        return -1;
    for (size_t j = hash_ptr(p) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        if (m->keys[j] == p)
            return m->vals[j];
        if (!m->keys[j])
            return -1;
    }
}

/* Adds p -> v unless p is there: 0, or -ENOMEM. */
static int map_put(ptrmap *m, const void *p, int v)
{
    if ((m->n + 1) * 2 > m->cap && map_grow(m) != 0)
        return -ENOMEM;
    size_t j = hash_ptr(p) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->keys[j] == p)
            return 0;
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = p;
    m->vals[j] = v;
    m->n++;
    return 0;
}

static void map_free(ptrmap *m)
{
    free(m->keys);
    free(m->vals);
}

/* Grows an array of `size`-byte items to hold one more: 0 or -ENOMEM. */
static int grow(void **items, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 256;
    void *p = weft__alloc_realloc(*items, c * size);
    if (!p)
        return -ENOMEM;
    *items = p;
    *cap = c;
    return 0;
}

static NO_TSAN void read_name(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        dst[i] = RD(src[i]);
    dst[n - 1] = 0;
}

/* ---- taking the tasks and scopes ---------------------------------------------------------- */

static NO_TSAN void take_task(weft__task *t, void *arg)
{
    dump *d = arg;
    if (d->err)
        return;
    uint64_t id = RD(t->id);
    uint32_t flags = RD(t->flags);
    if (!id || (flags & WEFT__TASK_FREE) || RD(t->rt) != d->rt)
        return;
    dtask x;
    x.rec = t;
    x.id = id;
    x.flags = flags;
    x.scope = RD(t->scope);
    x.host = RD(t->host);
    x.joiner = flags & WEFT__TASK_INLINE ? RD(t->joiner) : NULL;
    x.owned = RD(t->owned);
    x.wait = RD_U32(t->wait);
    x.on = RD(t->wait_on);
    x.obj = RD(t->wait_obj);
    x.parked_at = RD(t->parked_at);
    x.until = RD(t->wait_until);
    read_name(x.name, t->name, sizeof(x.name));
    x.worker = -1;
    x.scope_ix = -1;
    x.hosting = -1;
    /* A spawn or an end that reused the record while it was read: leave it out. */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (RD(t->id) != id || (RD(t->flags) & WEFT__TASK_FREE))
        return;
    if (grow((void **)&d->tasks, d->ntasks, &d->task_cap, sizeof(dtask)) != 0) {
        d->err = -ENOMEM;
        return;
    }
    d->tasks[d->ntasks++] = x;
}

/* Scope records are whole cache lines (scope_alloc_new): anything else is no scope. */
static int scope_ptr_ok(const weft_scope *s)
{
    return s && ((uintptr_t)s & 63) == 0;
}

static NO_TSAN void read_scope(const weft_scope *s, dscope *x)
{
    x->rec = s;
    x->parent = RD(s->parent);
    x->owner = RD(s->owner);
    x->prev_owned = RD(s->prev_owned);
    x->state = RD(s->state);
    x->policy = RD(s->policy);
    x->shield = RD(s->shield);
    x->cancel_code = RD_INT(s->cancel_code);
    x->cancel = RD_INT(s->cancel);
    x->max_running = RD(s->max_running);
    x->running = RD(s->running);
    x->own_deadline = RD(s->own_deadline);
    x->deferred = x->max_running ? weft__defer_count_racy(&s->deferred, 1u << 20) : 0;
    read_name(x->name, s->name, sizeof(x->name));
    x->parent_ix = x->owner_ix = -1;
}

/* The index of scope `s`, taken now if it is new; -1 for none (or no memory: d->err). */
static int add_scope(dump *d, const weft_scope *s)
{
    if (!scope_ptr_ok(s) || d->err)
        return -1;
    int ix = map_get(&d->scope_map, s);
    if (ix >= 0)
        return ix;
    if (grow((void **)&d->scopes, d->nscopes, &d->scope_cap, sizeof(dscope)) != 0 ||
        map_put(&d->scope_map, s, (int)d->nscopes) != 0) {
        d->err = -ENOMEM;
        return -1;
    }
    read_scope(s, &d->scopes[d->nscopes]);
    return (int)d->nscopes++;
}

static int by_id(const void *a, const void *b)
{
    uint64_t x = ((const dtask *)a)->id, y = ((const dtask *)b)->id;
    return x < y ? -1 : x > y;
}

/* Reads what the worker runs now. */
static NO_TSAN const weft__task *worker_current(weft__worker *w)
{
    return *(weft__task *const volatile *)&w->current;
}

/* Chains read racily may loop (a record reused meanwhile): walks stop after this many steps. */
#define CHAIN_MAX 100000

static void take_all(dump *d)
{
    weft_runtime *rt = d->rt;
    d->root = rt->root_scope;
    d->nworkers = rt->nworkers;
    add_scope(d, rt->root_scope);
    weft__records_walk(rt, take_task, d);
    if (d->err)
        return;
    /* Records are carved, and ids handed out, mostly in the same order: often sorted already. */
    size_t k = 1;
    while (k < d->ntasks && d->tasks[k - 1].id < d->tasks[k].id)
        k++;
    if (k < d->ntasks)
        qsort(d->tasks, d->ntasks, sizeof(dtask), by_id);
    for (size_t i = 0; i < d->ntasks && !d->err; i++) {
        if (map_put(&d->task_map, d->tasks[i].rec, (int)i) != 0)
            d->err = -ENOMEM;
    }
    for (size_t i = 0; i < d->ntasks && !d->err; i++) {
        dtask *t = &d->tasks[i];
        t->scope_ix = add_scope(d, t->scope);
        /* The scopes it opened, newest first: found here even with no child in them. */
        const weft_scope *s = t->owned;
        for (int n = 0; scope_ptr_ok(s) && n < CHAIN_MAX && !d->err; n++) {
            int ix = add_scope(d, s);
            if (ix < 0)
                break;
            s = d->scopes[ix].prev_owned;
        }
        /* The joiner of an inline child hosts it; nested inline joins share one stack (`host`),
         * each joiner hosting its own child. */
        int h = map_get(&d->task_map, t->joiner ? t->joiner : t->host);
        if (h >= 0 && h != (int)i)
            d->tasks[h].hosting = (int)i;
    }
    /* Their ancestors (the array grows as it is walked). */
    for (size_t i = 0; i < d->nscopes && !d->err; i++) {
        int p = add_scope(d, d->scopes[i].parent);
        d->scopes[i].parent_ix = p == (int)i ? -1 : p;
        d->scopes[i].owner_ix = map_get(&d->task_map, d->scopes[i].owner);
    }
    for (unsigned i = 0; i < d->nworkers; i++) {
        int ix = map_get(&d->task_map, worker_current(&rt->workers[i]));
        d->worker_task[i] = ix;
        if (ix >= 0)
            d->tasks[ix].worker = (int)i;
    }
}

/* ---- writing ------------------------------------------------------------------------------ */

#define OUT_BYTES 16384

typedef struct out {
    int fd;
    int err;
    size_t n;
    char buf[OUT_BYTES];
} out;

static void out_flush(out *o)
{
    size_t done = 0;
    while (!o->err && done < o->n) {
        ssize_t k = write(o->fd, o->buf + done, o->n - done);
        if (k > 0) {
            done += (size_t)k;
        } else if (k < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = o->fd, .events = POLLOUT};
            poll(&p, 1, -1);
        } else if (k < 0 && errno != EINTR) {
            o->err = -errno;
        } else if (k == 0) {
            o->err = -EIO;
        }
    }
    o->n = 0;
}

static void __attribute__((format(printf, 2, 3))) outf(out *o, const char *fmt, ...)
{
    if (o->err)
        return;
    if (OUT_BYTES - o->n < 512)
        out_flush(o);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->buf + o->n, OUT_BYTES - o->n, fmt, ap);
    va_end(ap);
    if (k > 0)
        o->n += (size_t)k < OUT_BYTES - o->n ? (size_t)k : OUT_BYTES - o->n - 1;
}

/* Room for `n` more bytes in the buffer (names are at most 32 bytes, 6 each escaped). */
static char *out_room(out *o, size_t n)
{
    if (OUT_BYTES - o->n < n)
        out_flush(o);
    return o->err ? NULL : o->buf + o->n;
}

/* A name as a JSON string (json.h: a name cut inside a UTF-8 character is possible). */
static void out_json_str(out *o, const char *s)
{
    size_t n = strlen(s);
    char *p = out_room(o, 2 + WEFT__JSON_ESCAPED_MAX * n), *start = p;
    if (!p)
        return;
    *p++ = '"';
    p = weft__json_escape(p, s, n);
    *p++ = '"';
    o->n += (size_t)(p - start);
}

/* The same for text: printable ASCII as it is, anything else as '?'. */
static void out_text_str(out *o, const char *s)
{
    char *p = out_room(o, 2 + strlen(s)), *start = p;
    if (!p)
        return;
    *p++ = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        *p++ = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    *p++ = '"';
    o->n += (size_t)(p - start);
}

static const char *policy_name(int p)
{
    return p == WEFT_FAIL_FAST ? "fail-fast" : p == WEFT_COLLECT ? "collect" : "?";
}

static const char *reason_name(int r)
{
    static const char *names[] = {"none", "explicit", "deadline", "failure", "parent", "shutdown"};
    return r >= 0 && r < (int)(sizeof(names) / sizeof(names[0])) ? names[r] : "?";
}

static const char *state_scope(int s)
{
    return s == WEFT__SCOPE_OPEN       ? "open"
           : s == WEFT__SCOPE_JOINED   ? "joined"
           : s == WEFT__SCOPE_RELEASED ? "released"
                                       : "?";
}

/* What a parked task waits on, as JSON's "on" and as words. */
static const char *on_name(int on)
{
    static const char *names[] = {"nothing", "join",    "sleep",    "sem",    "event",    "chan",
                                  "select",  "fd_read", "fd_write", "fd_any", "blocking", "fork"};
    return on >= 0 && on < (int)(sizeof(names) / sizeof(names[0])) ? names[on] : "?";
}

/* A task's state: running, parked, hosting (an inline child of its join runs or waits on its
 * stack), ready (queued: woken, or yielded), unstarted (queued, never run). */
static const char *task_state(const dtask *t)
{
    if (t->worker >= 0)
        return "running";
    if (t->wait == WEFT__WAIT_PARKED)
        return "parked";
    if (t->hosting >= 0)
        return "hosting";
    if (t->wait != WEFT__WAIT_NONE || t->host)
        return "ready";
    return "unstarted";
}

/* The earliest own deadline of scope ix and its ancestors up to a shield. */
static weft_time effective_deadline(const dump *d, int ix)
{
    weft_time dl = WEFT_NEVER;
    for (int n = 0; ix >= 0 && n < CHAIN_MAX; n++) {
        const dscope *s = &d->scopes[ix];
        if (s->own_deadline < dl)
            dl = s->own_deadline;
        if (s->shield)
            break;
        ix = s->parent_ix;
    }
    return dl;
}

static int fd_of(const dtask *t)
{
    return (int)(intptr_t)t->obj;
}

static int is_fd(int on)
{
    return on == WEFT__ON_FD_READ || on == WEFT__ON_FD_WRITE || on == WEFT__ON_FD_EITHER;
}

static weft_time since(const dump *d, weft_time then)
{
    return d->now > then ? d->now - then : 0;
}

static void json_time(out *o, const char *key, weft_time t)
{
    if (t == WEFT_NEVER)
        outf(o, ",\"%s\":null", key);
    else
        outf(o, ",\"%s\":%" PRId64, key, (int64_t)t);
}

static void write_json(const dump *d, out *o)
{
    outf(o, "{\"weft_dump\":1,\"runtime\":\"%p\",\"pid\":%ld,\"now_ns\":%" PRId64 ",\"workers\":[",
         (const void *)d->rt, (long)getpid(), (int64_t)d->now);
    for (unsigned i = 0; i < d->nworkers; i++) {
        int ix = d->worker_task[i];
        outf(o, "%s{\"index\":%u,\"task\":", i ? "," : "", i);
        if (ix >= 0)
            outf(o, "%" PRIu64 "}", d->tasks[ix].id);
        else
            outf(o, "null}");
    }
    outf(o, "],\n\"scopes\":[");
    for (size_t i = 0; i < d->nscopes; i++) {
        const dscope *s = &d->scopes[i];
        outf(o, "%s\n{\"index\":%zu,\"addr\":\"%p\",\"name\":", i ? "," : "", i,
             (const void *)s->rec);
        out_json_str(o, s->name);
        outf(o, ",\"parent\":");
        if (s->parent_ix >= 0)
            outf(o, "%d", s->parent_ix);
        else
            outf(o, "null");
        outf(o, ",\"owner\":");
        if (s->owner_ix >= 0)
            outf(o, "%" PRIu64, d->tasks[s->owner_ix].id);
        else
            outf(o, "null");
        outf(o, ",\"root\":%s,\"state\":\"%s\",\"policy\":\"%s\",\"shield\":%s",
             s->rec == d->root ? "true" : "false", state_scope(s->state), policy_name(s->policy),
             s->shield ? "true" : "false");
        weft_time eff = effective_deadline(d, (int)i);
        json_time(o, "deadline_ns", s->own_deadline);
        json_time(o, "effective_deadline_ns", eff);
        if (eff == WEFT_NEVER)
            outf(o, ",\"left_ns\":null");
        else
            outf(o, ",\"left_ns\":%" PRId64, (int64_t)(eff - d->now));
        outf(o, ",\"cancelled\":%s,\"cancel_code\":%d,\"cancel_reason\":\"%s\"",
             s->cancel_code ? "true" : "false", s->cancel_code, reason_name(s->cancel));
        outf(o, ",\"max_concurrency\":%u,\"running\":%u,\"waiting\":%zu}", s->max_running,
             s->max_running ? s->running : 0, s->deferred);
    }
    outf(o, "],\n\"tasks\":[");
    for (size_t i = 0; i < d->ntasks; i++) {
        const dtask *t = &d->tasks[i];
        const char *st = task_state(t);
        outf(o, "%s\n{\"id\":%" PRIu64 ",\"name\":", i ? "," : "", t->id);
        out_json_str(o, t->name);
        outf(o, ",\"scope\":");
        if (t->scope_ix >= 0)
            outf(o, "%d", t->scope_ix);
        else
            outf(o, "null");
        outf(o, ",\"state\":\"%s\",\"inline\":%s", st,
             (t->flags & WEFT__TASK_INLINE) ? "true" : "false");
        if (t->worker >= 0)
            outf(o, ",\"worker\":%d", t->worker);
        if (t->hosting >= 0)
            outf(o, ",\"hosting\":%" PRIu64, d->tasks[t->hosting].id);
        if (t->wait == WEFT__WAIT_PARKED && t->worker < 0) {
            outf(o, ",\"on\":\"%s\",\"parked_ns\":%" PRId64, on_name(t->on),
                 (int64_t)since(d, t->parked_at));
            if (t->on == WEFT__ON_JOIN) {
                int j = map_get(&d->scope_map, t->obj);
                if (j >= 0)
                    outf(o, ",\"join_scope\":%d", j);
                else
                    outf(o, ",\"join_scope\":null");
            } else if (is_fd(t->on)) {
                outf(o, ",\"fd\":%d", fd_of(t));
            } else if (t->obj) {
                outf(o, ",\"object\":\"%p\"", t->obj);
            } else {
                outf(o, ",\"object\":null"); /* a sleep waits on nothing */
            }
            if (t->on != WEFT__ON_JOIN) {
                json_time(o, "until_ns", t->until);
                if (t->until != WEFT_NEVER)
                    outf(o, ",\"left_ns\":%" PRId64, (int64_t)(t->until - d->now));
            }
        }
        outf(o, "}");
    }
    outf(o, "]}\n");
}

/* A span of time for a person: "12.345 s" (negative spans with a minus). */
static void text_span(out *o, weft_time ns)
{
    const char *sign = "";
    if (ns < 0) {
        sign = "-";
        ns = -ns;
    }
    outf(o, "%s%" PRId64 ".%03d s", sign, (int64_t)(ns / WEFT_SEC),
         (int)(ns % WEFT_SEC / WEFT_MSEC));
}

static void text_scope(const dump *d, out *o, int ix, int depth)
{
    const dscope *s = &d->scopes[ix];
    outf(o, "%*sscope #%d ", depth * 2, "", ix);
    if (s->rec == d->root)
        outf(o, "(runtime root) ");
    else if (s->name[0]) {
        out_text_str(o, s->name);
        outf(o, " ");
    }
    outf(o, "%s", policy_name(s->policy));
    if (s->state != WEFT__SCOPE_OPEN)
        outf(o, ", %s", state_scope(s->state));
    if (s->shield)
        outf(o, ", shielded");
    weft_time dl = effective_deadline(d, ix);
    if (dl != WEFT_NEVER) {
        outf(o, dl >= d->now ? ", deadline in " : ", deadline passed ");
        text_span(o, dl >= d->now ? dl - d->now : d->now - dl);
        if (dl < d->now)
            outf(o, " ago");
    }
    if (s->max_running)
        outf(o, ", max_concurrency %u (%u running, %zu waiting unstarted)", s->max_running,
             s->running, s->deferred);
    if (s->cancel_code)
        outf(o, ", cancelled (%s, %s)", reason_name(s->cancel),
             s->cancel_code == -ETIMEDOUT ? "-ETIMEDOUT" : "-ECANCELED");
    outf(o, "\n");
}

static void text_task(const dump *d, out *o, int ix, int depth)
{
    const dtask *t = &d->tasks[ix];
    outf(o, "%*stask %" PRIu64 " ", depth * 2, "", t->id);
    if (t->name[0]) {
        out_text_str(o, t->name);
        outf(o, " ");
    }
    const char *st = task_state(t);
    if (t->worker >= 0) {
        outf(o, "running on worker %d", t->worker);
    } else if (t->wait == WEFT__WAIT_PARKED) {
        outf(o, "parked for ");
        text_span(o, since(d, t->parked_at));
        outf(o, ": ");
        switch (t->on) {
        case WEFT__ON_JOIN: {
            int j = map_get(&d->scope_map, t->obj);
            outf(o, "join of scope #%d", j);
            if (j >= 0 && d->scopes[j].name[0]) {
                outf(o, " ");
                out_text_str(o, d->scopes[j].name);
            }
            break;
        }
        case WEFT__ON_SLEEP:
            outf(o, "sleep");
            break;
        case WEFT__ON_SEM:
            outf(o, "semaphore %p", t->obj);
            break;
        case WEFT__ON_EVENT:
            outf(o, "event %p", t->obj);
            break;
        case WEFT__ON_CHAN:
            outf(o, "channel (operation %p)", t->obj);
            break;
        case WEFT__ON_SELECT:
            outf(o, "select (operations at %p)", t->obj);
            break;
        case WEFT__ON_FD_READ:
            outf(o, "fd %d readable", fd_of(t));
            break;
        case WEFT__ON_FD_WRITE:
            outf(o, "fd %d writable", fd_of(t));
            break;
        case WEFT__ON_FD_EITHER:
            outf(o, "fd %d readable or writable", fd_of(t));
            break;
        case WEFT__ON_BLOCKING:
            outf(o, "blocking call %p", t->obj);
            break;
        case WEFT__ON_FORK:
            outf(o, "its forked function, running on another worker (weft_fork_join %p)", t->obj);
            break;
        default:
            outf(o, "?");
        }
        if (t->on != WEFT__ON_JOIN && t->until != WEFT_NEVER) {
            outf(o, t->on == WEFT__ON_SLEEP ? ", wakes in " : ", times out in ");
            text_span(o, t->until - d->now);
        }
    } else if (t->hosting >= 0) {
        outf(o, "joining, runs task %" PRIu64 " inline on its stack", d->tasks[t->hosting].id);
    } else {
        outf(o, "%s", st);
    }
    if (t->flags & WEFT__TASK_INLINE)
        outf(o, " (inline in its joiner)");
    outf(o, "\n");
}

/* The tree, depth first, without recursion (a dump may run on a task's small stack). Each node
 * is written once; those no walk from a root reaches (a race left their links inconsistent) are
 * written at the end. */
static int write_text(const dump *d, out *o)
{
    size_t nt = d->ntasks, ns = d->nscopes, nodes = nt + ns;
    outf(o, "weft dump: runtime %p, pid %ld, %u workers, %zu tasks, %zu scopes\n",
         (const void *)d->rt, (long)getpid(), d->nworkers, nt, ns);
    for (unsigned i = 0; i < d->nworkers; i++) {
        int ix = d->worker_task[i];
        if (ix >= 0)
            outf(o, "worker %u: task %" PRIu64 "\n", i, d->tasks[ix].id);
        else
            outf(o, "worker %u: in the scheduler\n", i);
    }
    /* Children lists: a scope's tasks, then its scopes no known task owns; a task's scopes.
     * Nodes 0..ns-1 are scopes, ns.. tasks. start[n]..start[n+1] indexes `kids`. */
    size_t *start = weft__alloc_calloc(nodes + 2, sizeof(size_t));
    int *kids = weft__alloc_malloc((nodes + 1) * sizeof(int));
    int *stack = weft__alloc_malloc((nodes + 1) * 2 * sizeof(int));
    unsigned char *seen = weft__alloc_calloc(nodes + 1, 1);
    size_t *fill = weft__alloc_calloc(nodes + 1, sizeof(size_t));
    int rc = 0;
    if (!start || !kids || !stack || !seen || !fill) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nt; i++)
        if (d->tasks[i].scope_ix >= 0)
            start[d->tasks[i].scope_ix + 1]++;
    for (size_t i = 0; i < ns; i++) {
        const dscope *s = &d->scopes[i];
        if (s->owner_ix >= 0)
            start[ns + (size_t)s->owner_ix + 1]++;
        else if (s->parent_ix >= 0)
            start[s->parent_ix + 1]++;
    }
    for (size_t n = 0; n < nodes; n++)
        start[n + 1] += start[n];
    for (size_t i = 0; i < nt; i++) {
        int s = d->tasks[i].scope_ix;
        if (s >= 0)
            kids[start[s] + fill[s]++] = (int)(ns + i);
    }
    for (size_t i = 0; i < ns; i++) {
        const dscope *s = &d->scopes[i];
        size_t p = s->owner_ix >= 0 ? ns + (size_t)s->owner_ix : (size_t)s->parent_ix;
        if (s->owner_ix >= 0 || s->parent_ix >= 0)
            kids[start[p] + fill[p]++] = (int)i;
    }
    /* Roots first (scopes with no parent), then whatever they did not reach. */
    int header = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t r = 0; r < nodes; r++) {
            int root = pass == 0
                           ? (r < ns && d->scopes[r].parent_ix < 0 && d->scopes[r].owner_ix < 0)
                           : !seen[r];
            if (!root || seen[r])
                continue;
            if (pass == 1 && !header++)
                outf(o, "not reached from a root (changed while dumped):\n");
            size_t sp = 0;
            stack[sp++] = (int)r;
            stack[sp++] = 0;
            while (sp) {
                int depth = stack[--sp];
                int n = stack[--sp];
                if (seen[n])
                    continue;
                seen[n] = 1;
                if ((size_t)n < ns)
                    text_scope(d, o, n, depth);
                else
                    text_task(d, o, (int)((size_t)n - ns), depth);
                for (size_t k = start[n + 1]; k-- > start[n];) {
                    if (!seen[kids[k]] && sp + 2 <= (nodes + 1) * 2) {
                        stack[sp++] = kids[k];
                        stack[sp++] = depth + 1;
                    }
                }
            }
        }
    }
out:
    free(start);
    free(kids);
    free(stack);
    free(seen);
    free(fill);
    return rc;
}

/* ---- weft_dump ---------------------------------------------------------------------------- */

/* Writes on a closed pipe must not end the process (sigpipe.h). */
static int write_dump(const dump *d, int fd, int flags)
{
    out *o = weft__alloc_malloc(sizeof(*o));
    if (!o)
        return -ENOMEM;
    o->fd = fd;
    o->err = 0;
    o->n = 0;
    sigset_t old;
    weft__sigpipe_block(&old);
    int rc = 0;
    if (flags & WEFT_DUMP_JSON)
        write_json(d, o);
    else
        rc = write_text(d, o);
    out_flush(o);
    weft__sigpipe_restore(&old, o->err == -EPIPE);
    if (!rc)
        rc = o->err;
    free(o);
    return rc;
}

/* Takes the tree of `rt` into *d (zeroed by the caller; dump_free frees what it holds): 0,
 * -ESHUTDOWN or -ENOMEM. The runtime is read under its dump lock only: what is written after
 * is the copy, so a slow reader of the descriptor holds up neither the runtime's end nor, for
 * the dump signal, other runtimes. */
static int dump_take(weft_runtime *rt, dump *d)
{
    pthread_mutex_lock(&rt->dump_lock);
    if (rt->dump_closed) {
        pthread_mutex_unlock(&rt->dump_lock);
        return -ESHUTDOWN;
    }
    d->rt = rt;
    d->now = weft_now();
    take_all(d);
    pthread_mutex_unlock(&rt->dump_lock);
    return d->err;
}

static void dump_free(dump *d)
{
    free(d->tasks);
    free(d->scopes);
    map_free(&d->task_map);
    map_free(&d->scope_map);
}

static int dump_count(const dump *d)
{
    return d->ntasks > INT32_MAX ? INT32_MAX : (int)d->ntasks;
}

static int dump_body(weft_runtime *rt, int fd, int flags)
{
    if (flags & ~WEFT_DUMP_JSON)
        return -EINVAL;
    if (!rt) {
        weft__worker *w = weft__sched_worker();
        if (!w)
            return -EINVAL;
        rt = w->rt;
    }
    if (fd < 0 || fcntl(fd, F_GETFL) < 0)
        return -EBADF;
    dump *d = weft__alloc_calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    int rc = dump_take(rt, d);
    if (rc == 0)
        rc = write_dump(d, fd, flags);
    if (rc == 0)
        rc = dump_count(d);
    dump_free(d);
    free(d);
    return rc;
}

int weft_dump(weft_runtime *rt, int fd, int flags)
{
    int kept = weft__errno_keep();
    int rc = dump_body(rt, fd, flags);
    weft__errno_put_back(kept);
    return rc;
}

/* ---- the process's runtimes and the dump signal ------------------------------------------- */

/* Read by the debugger script (tools/weft-gdb.py) as well: the list's head, and where it finds
 * the fields it reads, so that it needs no debug information. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
weft_runtime *weft__dump_runtimes __attribute__((visibility("hidden"), used));

#define OFF(type, field) ((uint64_t)offsetof(type, field))
/* Version 2. The order is the script's: change both together. */
const uint64_t weft__dump_layout[] __attribute__((visibility("hidden"), used)) = {
    2,                                         /* version */
    (sizeof(weft__task) + 63) & ~(uint64_t)63, /* a record's stride in a chunk */
    64,                                        /* where a chunk's first record lies */
    OFF(weft_runtime, dump_next),
    OFF(weft_runtime, chunks),
    OFF(weft_runtime, workers),
    OFF(weft_runtime, nworkers),
    sizeof(weft__worker),
    OFF(weft__worker, current),
    0,                  /* task_chunk: next (first field) */
    sizeof(void *),     /* bytes */
    2 * sizeof(void *), /* records (int) */
    OFF(weft__task, id),
    OFF(weft__task, flags),
    OFF(weft__task, wait),
    OFF(weft__task, wait_on),
    OFF(weft__task, wait_obj),
    OFF(weft__task, name),
    OFF(weft__task, ctx),
    OFF(weft__task, host),
    OFF(weft__task, scope),
    OFF(weft__task, rt),
    OFF(weft_scope, name),
    WEFT__TASK_FREE,
    WEFT__WAIT_PARKED,
    OFF(weft__task, parked_at),
    OFF(weft__task, joiner), /* version 2 */
    WEFT__TASK_INLINE,
};

static int sig_pipe[2] = {-1, -1}; /* made once, kept for the life of the process */
static _Atomic int sig_write_fd = -1;
static int sig_thread_started;
static int sig_users[NSIG];
static struct sigaction sig_old[NSIG];

static void on_dump_signal(int signo)
{
    int saved = errno;
    unsigned char b = (unsigned char)signo;
    int fd = atomic_load_explicit(&sig_write_fd, memory_order_relaxed);
    if (fd >= 0) {
        ssize_t k = write(fd, &b, 1); /* a full pipe drops it: dumps are already due */
        (void)k;
    }
    errno = saved;
}

static void *dump_thread(void *arg)
{
    (void)arg;
    unsigned char sigs[64];
    for (;;) {
        ssize_t n = read(sig_pipe[0], sigs, sizeof(sigs));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        unsigned char want[NSIG] = {0};
        for (ssize_t i = 0; i < n; i++)
            if (sigs[i] < NSIG)
                want[sigs[i]] = 1;
        /* Taken under the list's lock (a runtime on it is alive), written after it. */
        dump *todo = NULL, **tail = &todo;
        pthread_mutex_lock(&registry_lock);
        for (weft_runtime *rt = weft__dump_runtimes; rt; rt = rt->dump_next) {
            int s = rt->cfg.dump_signal;
            if (s <= 0 || s >= NSIG || !want[s])
                continue;
            dump *d = weft__alloc_calloc(1, sizeof(*d));
            if (d && dump_take(rt, d) == 0) {
                *tail = d;
                tail = &d->next;
            } else if (d) {
                dump_free(d);
                free(d);
            }
        }
        pthread_mutex_unlock(&registry_lock);
        while (todo) {
            dump *d = todo;
            todo = d->next;
            write_dump(d, STDERR_FILENO, WEFT_DUMP_TEXT);
            dump_free(d);
            free(d);
        }
    }
}

/* The pipe and the thread, the first time a runtime asks for a signal. Under registry_lock. */
static int start_signal_thread(void)
{
    if (sig_thread_started)
        return 0;
    if (sig_pipe[0] < 0 && pipe2(sig_pipe, O_CLOEXEC) != 0)
        return errno == EMFILE || errno == ENFILE ? -errno : -EAGAIN;
    fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK);
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* No signal on this thread but those it must take: the dump signal runs on the others. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = weft__alloc_thread_create(&th, &attr, dump_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return -EAGAIN;
    sig_thread_started = 1;
    atomic_store_explicit(&sig_write_fd, sig_pipe[1], memory_order_relaxed);
    return 0;
}

void weft__dump_init(weft_runtime *rt)
{
    pthread_mutex_init(&rt->dump_lock, NULL);
    rt->dump_closed = 0;
}

int weft__dump_register(weft_runtime *rt)
{
    int s = rt->cfg.dump_signal;
    pthread_mutex_lock(&registry_lock);
    if (s > 0) {
        int rc = start_signal_thread();
        if (rc != 0) {
            pthread_mutex_unlock(&registry_lock);
            return rc;
        }
        if (sig_users[s] == 0) {
            struct sigaction sa;
            memset(&sa, 0, sizeof(sa));
            sa.sa_handler = on_dump_signal;
            sa.sa_flags = SA_RESTART;
            sigemptyset(&sa.sa_mask);
            if (sigaction(s, &sa, &sig_old[s]) != 0) {
                rc = -errno; /* refused: the start fails rather than never dump */
                pthread_mutex_unlock(&registry_lock);
                return rc;
            }
        }
        sig_users[s]++;
    }
    rt->dump_next = weft__dump_runtimes;
    weft__dump_runtimes = rt;
    pthread_mutex_unlock(&registry_lock);
    return 0;
}

void weft__dump_unregister(weft_runtime *rt)
{
    pthread_mutex_lock(&registry_lock);
    for (weft_runtime **p = &weft__dump_runtimes; *p; p = &(*p)->dump_next) {
        if (*p == rt) {
            *p = rt->dump_next;
            int s = rt->cfg.dump_signal;
            if (s > 0 && --sig_users[s] == 0)
                sigaction(s, &sig_old[s], NULL);
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    pthread_mutex_lock(&rt->dump_lock);
    rt->dump_closed = 1;
    pthread_mutex_unlock(&rt->dump_lock);
}
