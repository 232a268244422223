// SPDX-License-Identifier: MIT
/*
 * Records: where task records and page-sized blocks come from, and where they go back.
 *
 * Nothing here is ever unmapped while its runtime lives, so a stale pointer to a task record
 * always points to a task record (a waker that lost a race reads a record, never freed memory).
 */
#include "records.h"

#include <errno.h>
#include <stdlib.h>

#include "alloc.h"
#include "runtime.h"
#include "sched.h"
#include "scope.h"

/* Task records are carved from chunks, never allocated one by one: a burst of spawns costs one
 * mapping per chunk. A worker's first chunk is small (64 KiB of 4 KiB pages) so that a small
 * program stays small; later ones are 2 MiB transparent huge pages, because a first touch of a
 * fresh 4 KiB page costs far more than its share of a fresh huge page (README.md, Performance),
 * which made page faults the main cost of spawning 100,000 tasks.
 * The huge ones come from the runtime's range apart from the stacks (huge.h).
 * A worker takes records from its chunk in order, as it needs them, so that the pages of records
 * never used are never touched (an empty weft_run touches one). */
#define SMALL_CHUNK_BYTES ((size_t)64 * 1024)
#define HUGE_CHUNK_BYTES ((size_t)2 * 1024 * 1024)

/* Task ids are handed to workers in blocks, so that a spawn costs no shared atomic. */
static _Atomic uint64_t next_id_block = 1;
#define ID_BLOCK 4096

uint64_t weft__records_id_slow(weft__worker *w)
{
    if (!w)
        return atomic_fetch_add_explicit(&next_id_block, 1, memory_order_relaxed);
    /* The ids a worker gave out are the tasks it made (weft_runtime_metrics reads them through
     * weft__records_ids_given): a block changes under a sequence count, odd meanwhile. */
    weft__worker_counts *c = &w->counts;
    __atomic_store_n(&c->id_seq, c->id_seq + 1, __ATOMIC_RELAXED);
    atomic_thread_fence(memory_order_release);
    if (w->end_id)
        c->ids_before += ID_BLOCK; /* the last block, used up */
    w->next_id = atomic_fetch_add_explicit(&next_id_block, ID_BLOCK, memory_order_relaxed);
    w->end_id = w->next_id + ID_BLOCK;
    __atomic_store_n(&c->id_seq, c->id_seq + 1, __ATOMIC_RELEASE);
    return w->next_id++;
}

uint64_t weft__records_ids_given(weft__worker *w)
{
    const weft__worker_counts *c = &w->counts;
    for (;;) {
        uint32_t seq = __atomic_load_n(&c->id_seq, __ATOMIC_ACQUIRE);
        uint64_t before = __atomic_load_n(&c->ids_before, __ATOMIC_RELAXED);
        uint64_t end = __atomic_load_n(&w->end_id, __ATOMIC_RELAXED);
        uint64_t next = __atomic_load_n(&w->next_id, __ATOMIC_RELAXED);
        atomic_thread_fence(memory_order_acquire);
        if ((seq & 1) || __atomic_load_n(&c->id_seq, __ATOMIC_RELAXED) != seq)
            continue; /* a new block meanwhile: read again */
        return end ? before + (next - (end - ID_BLOCK)) : 0;
    }
}

#define TASK_RECORD_SIZE ((sizeof(weft__task) + 63) & ~(size_t)63)

/* Its layout is also read through weft__dump_layout (dump.c) by tools/weft-gdb.py: change both
 * together. */
typedef struct task_chunk {
    struct task_chunk *next;
    size_t bytes;
    int records; /* of task records (else of blocks): for weft__records_walk */
} task_chunk;

/* Maps a chunk and registers it with the runtime (chunks stay in the runtime until it is
 * destroyed: a stale pointer to a task record always points to a record). NULL when out of
 * memory. */
static task_chunk *new_chunk(weft_runtime *rt, int huge, int records)
{
    size_t bytes = huge ? HUGE_CHUNK_BYTES : SMALL_CHUNK_BYTES;
    task_chunk *c = huge ? weft__huge_take(&rt->huge, bytes) : weft__alloc_map(bytes, 0);
    if (!c)
        return NULL;
    c->bytes = bytes;
    c->records = records;
    weft__lock_acquire(&rt->chunk_lock);
    c->next = rt->chunks;
    rt->chunks = c;
    weft__lock_release(&rt->chunk_lock);
    return c;
}

/* A new chunk of records: returns the first record's address and sets *end past the last. */
static char *new_record_chunk(weft_runtime *rt, int huge, char **end)
{
    task_chunk *c = new_chunk(rt, huge, 1);
    if (!c)
        return NULL;
    char *mem = (char *)c;
    *end = mem + 64 + (c->bytes - 64) / TASK_RECORD_SIZE * TASK_RECORD_SIZE;
    return mem + 64;
}

/* The next untouched `size` bytes of a carving range [*carve, end), or NULL when it is used up
 * (ranges are whole multiples of the size carved from them). */
static void *take_carved(char **carve, char *end, size_t size)
{
    if (*carve == end)
        return NULL;
    void *p = *carve;
    *carve += size;
    return p;
}

/* ---- blocks ------------------------------------------------------------------------------ */

/* Page-sized blocks for the deferred-children queues (defer.h), carved from chunks like the
 * records and for the same reason: 100,000 deferred children fill 400 blocks, which as fresh
 * 4 KiB pages from malloc cost more than the children themselves. The first chunk is small.
 * Blocks are recycled through the runtime, under the chunk lock (one call per 255 children). */
#define BLOCK_BYTES WEFT__BLOCK_BYTES

void *weft__records_alloc_block(weft_runtime *rt)
{
    if (weft__alloc_should_fail())
        return NULL;
    weft__lock_acquire(&rt->chunk_lock);
    void *b = rt->free_blocks;
    if (b)
        rt->free_blocks = *(void **)b;
    else
        b = take_carved(&rt->block_carve, rt->block_end, BLOCK_BYTES);
    int huge = rt->block_chunks > 0;
    weft__lock_release(&rt->chunk_lock);
    if (b)
        return b;
    task_chunk *c = new_chunk(rt, huge, 0);
    if (!c)
        return NULL;
    /* The first page holds the chunk's header; blocks start at the second. */
    char *first = (char *)c + BLOCK_BYTES;
    weft__lock_acquire(&rt->chunk_lock);
    /* Two threads mapping at once: the later range wins, the rest of the other stays unused. */
    rt->block_chunks++;
    rt->block_carve = first + BLOCK_BYTES;
    rt->block_end = (char *)c + c->bytes;
    weft__lock_release(&rt->chunk_lock);
    return first;
}

void weft__records_free_block(weft_runtime *rt, void *b)
{
    weft__lock_acquire(&rt->chunk_lock);
    *(void **)b = rt->free_blocks;
    rt->free_blocks = b;
    weft__lock_release(&rt->chunk_lock);
}

/* The next record of worker `w`'s chunk, mapping a new chunk when it is used up. */
static weft__task *carve_record(weft__worker *w, weft_runtime *rt)
{
    weft__task *t = take_carved(&w->carve, w->carve_end, TASK_RECORD_SIZE);
    if (t)
        return t;
    char *end, *first = new_record_chunk(rt, w->chunks_made > 0, &end);
    if (!first)
        return NULL;
    w->chunks_made++;
    w->carve = first + TASK_RECORD_SIZE;
    w->carve_end = end;
    return (weft__task *)first;
}

weft__task *weft__records_alloc_task(weft_runtime *rt)
{
    return weft__records_alloc_task_on(weft__sched_worker(), rt);
}

/* See WEFT__TASK_CACHE_MAX (records.h). */
#define TASK_BATCH (WEFT__TASK_CACHE_MAX / 2)

/* Batches are chained through their first record's `snext` (free records use no wait links). */
void weft__records_give_batch(weft__worker *w, weft_runtime *rt)
{
    weft__task *first = w->task_cache, *last = first;
    for (unsigned i = 1; i < TASK_BATCH; i++)
        last = last->next;
    w->task_cache = last->next;
    w->task_cache_count -= TASK_BATCH;
    last->next = NULL;
    weft__lock_acquire(&rt->chunk_lock);
    first->snext = rt->task_batches;
    __atomic_store_n(&rt->task_batches, first, __ATOMIC_RELAXED); /* read unlocked below */
    weft__lock_release(&rt->chunk_lock);
}

/* Refills an empty cache with a batch from the runtime: 1 if there was one. */
static int take_batch(weft__worker *w, weft_runtime *rt)
{
    if (!__atomic_load_n(&rt->task_batches, __ATOMIC_RELAXED))
        return 0;
    weft__lock_acquire(&rt->chunk_lock);
    weft__task *b = rt->task_batches;
    if (b)
        __atomic_store_n(&rt->task_batches, b->snext, __ATOMIC_RELAXED);
    weft__lock_release(&rt->chunk_lock);
    if (!b)
        return 0;
    w->task_cache = b;
    w->task_cache_count = TASK_BATCH;
    return 1;
}

int weft__records_reserve_task_on(weft__worker *w, weft_runtime *rt)
{
    if (w->task_cache || w->carve != w->carve_end || take_batch(w, rt))
        return 0;
    weft__task *t = carve_record(w, rt);
    if (!t)
        return -ENOMEM;
    t->rt = rt; /* as every record in a cache (weft__task_reset_cached) */
    t->next = NULL;
    w->task_cache = t;
    w->task_cache_count = 1;
    return 0;
}

weft__task *weft__records_alloc_task_on(weft__worker *w, weft_runtime *rt)
{
    weft__task *t;
    if (w && w->rt == rt) {
        if (w->task_cache || take_batch(w, rt)) {
            t = weft__records_cache_pop(w);
        } else {
            t = carve_record(w, rt);
        }
    } else {
        /* Off the workers (weft_run's root, submissions): the runtime's spare records, else a
         * batch the workers gave up, else its own carving range, under the chunk lock. Submitted
         * tasks end on the workers, whose caches overflow into the batches: without taking them
         * back here, a plain thread that submits for as long as the runtime lives would have a
         * record carved for every submission. The rest of a batch becomes the spare records. */
        weft__lock_acquire(&rt->chunk_lock);
        t = rt->spare_tasks;
        if (!t && (t = rt->task_batches) != NULL)
            __atomic_store_n(&rt->task_batches, t->snext, __ATOMIC_RELAXED);
        if (t)
            rt->spare_tasks = t->next;
        else
            t = take_carved(&rt->carve, rt->carve_end, TASK_RECORD_SIZE);
        weft__lock_release(&rt->chunk_lock);
        if (!t) {
            char *end, *mem = new_record_chunk(rt, 0, &end);
            if (mem) {
                t = (weft__task *)mem;
                /* Two threads mapping at once: the later range wins, the other's rest stays
                 * mapped and unused until the runtime ends. */
                weft__lock_acquire(&rt->chunk_lock);
                rt->carve = mem + TASK_RECORD_SIZE;
                rt->carve_end = end;
                weft__lock_release(&rt->chunk_lock);
            }
        }
    }
    if (!t)
        return NULL;
    weft__task_reset(t, rt, weft__records_new_id(w));
    return t;
}

void weft__records_free_task(weft__task *t)
{
    weft__records_free_task_on(weft__sched_worker(), t);
}

void weft__records_free_task_on(weft__worker *w, weft__task *t)
{
    weft_runtime *rt = t->rt;
    t->stack_size = 0; /* at rest (weft__task_reset_cached) */
    if (w && w->rt == rt) {
        weft__records_free_task_own(w, t);
        return;
    }
    t->flags = WEFT__TASK_FREE;
    weft__lock_acquire(&rt->chunk_lock);
    t->next = rt->spare_tasks;
    rt->spare_tasks = t;
    weft__lock_release(&rt->chunk_lock);
}

/* Reads records other threads write, on purpose and without a lock (see records.h): plain loads,
 * kept out of ThreadSanitizer's sight. Chunks are only ever added, at the head, under the lock,
 * each complete before it is linked: the walk takes the head under the lock and the rest as it
 * is. */
__attribute__((no_sanitize("thread"))) void
weft__records_walk(weft_runtime *rt, void (*fn)(weft__task *t, void *arg), void *arg)
{
    weft__lock_acquire(&rt->chunk_lock);
    task_chunk *c = rt->chunks;
    weft__lock_release(&rt->chunk_lock);
    for (; c; c = c->next) {
        if (!c->records)
            continue;
        char *end = (char *)c + 64 + (c->bytes - 64) / TASK_RECORD_SIZE * TASK_RECORD_SIZE;
        for (char *p = (char *)c + 64; p < end; p += TASK_RECORD_SIZE)
            fn((weft__task *)p, arg);
    }
}

size_t weft__records_mapped_bytes(weft_runtime *rt)
{
    size_t bytes = 0;
    weft__lock_acquire(&rt->chunk_lock);
    for (task_chunk *c = rt->chunks; c; c = c->next)
        bytes += c->bytes;
    weft__lock_release(&rt->chunk_lock);
    return bytes;
}

weft_scope *weft__records_take_scope(weft_runtime *rt)
{
    if (!__atomic_load_n(&rt->spare_scopes, __ATOMIC_RELAXED))
        return NULL;
    weft__lock_acquire(&rt->chunk_lock);
    weft_scope *s = rt->spare_scopes;
    if (s)
        __atomic_store_n(&rt->spare_scopes, s->cache_next, __ATOMIC_RELAXED);
    weft__lock_release(&rt->chunk_lock);
    return s;
}

void weft__records_give_scope(weft_runtime *rt, weft_scope *s)
{
    weft__lock_acquire(&rt->chunk_lock);
    s->cache_next = rt->spare_scopes;
    /* Read unlocked by weft__records_take_scope, to skip the lock when there are none. */
    __atomic_store_n(&rt->spare_scopes, s, __ATOMIC_RELAXED);
    weft__lock_release(&rt->chunk_lock);
}

void weft__records_worker_drop(weft__worker *w)
{
    w->task_cache = NULL;
    w->task_cache_count = 0;
    w->carve = w->carve_end = NULL;
    while (w->scopes.top) {
        weft_scope *s = w->scopes.top;
        w->scopes.top = s->cache_next;
        free(s);
    }
}

void weft__records_destroy(weft_runtime *rt)
{
    while (rt->spare_scopes) {
        weft_scope *s = rt->spare_scopes;
        rt->spare_scopes = s->cache_next;
        free(s);
    }
    for (task_chunk *c = rt->chunks, *next; c; c = next) {
        next = c->next;
        weft__huge_give_back(&rt->huge, c, c->bytes);
    }
    rt->chunks = NULL;
    weft__huge_destroy(&rt->huge);
}
