// SPDX-License-Identifier: MIT
/*
 * Every allocation of the library goes through here, so that tests can make any one of them fail
 * (weft__alloc_fail_at) and check that each -ENOMEM path is clean: nothing half-done, nothing
 * leaked. Unarmed, the hook costs one relaxed load of a counter per allocation. Thread creation
 * has a hook of its own (weft__alloc_thread_fail_at), for the -EAGAIN paths.
 */
#ifndef WEFT_ALLOC_H
#define WEFT_ALLOC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/** Test hook: the n-th allocation from now (1 = the next one) fails, then all succeed again
 *  while the count goes on. 0 disarms it. Process-wide; meant for single-runtime tests. */
void weft__alloc_fail_at(long n);
/** Test hook: with `on`, every allocation fails until it is called again with 0 (or
 *  weft__alloc_fail_at is): memory that stays exhausted, as under an address-space limit. */
void weft__alloc_fail_all(int on);
/** How many allocations the library made since the hook was armed (0 once disarmed). */
long weft__alloc_count(void);
/** Test hook: the n-th allocation from now (1 = the next one) first calls `stall` on the
 *  allocating thread, where a loaded machine makes malloc or the kernel wait, then goes on.
 *  0 disarms it. Counted as weft__alloc_fail_at counts; arming either restarts the count. */
void weft__alloc_stall_at(long n, void (*stall)(void));

/** 1 when the hook says this allocation fails (also for mmap-based allocations); runs the
 *  stall of weft__alloc_stall_at when this allocation is the one. */
int weft__alloc_should_fail(void);

void *weft__alloc_malloc(size_t n);
void *weft__alloc_calloc(size_t count, size_t n);
void *weft__alloc_realloc(void *p, size_t n);
void *weft__alloc_aligned(size_t align, size_t n);
char *weft__alloc_strdup(const char *s);

/** Anonymous memory of `bytes` straight from the kernel, zeroed, for bulk use. With `huge`,
 *  aligned to `bytes` (a power of two, at least 2 MiB) and advised into transparent huge pages,
 *  which fault in a whole 2 MiB at a fraction of the cost per byte of 4 KiB pages. NULL when out
 *  of memory. */
void *weft__alloc_map(size_t bytes, int huge);
void weft__alloc_unmap(void *p, size_t bytes);

/* The library's own waits. malloc may wait for its arena's lock, and the calls that map or
 * protect memory for the address space's; on a machine with far more threads than CPUs such a
 * wait lasts as long as the lock's holder waits for a CPU, hundreds of milliseconds. It is the
 * runtime's wait, not that of the task running on the worker, and the watchdog must not charge
 * it to the task: so the worker's thread counts these waits, in, out, where the watchdog reads
 * the count (weft__worker.own_waits), which is odd inside one. Only around a call that cannot
 * reach another such wait, which would upset the parity: a libc call, a spin. */

/** On a worker's thread, the count of its own waits (the worker's loop sets it), NULL on others.
 *  initial-exec, as weft__tls_worker. */
extern _Thread_local _Atomic uint64_t *weft__alloc_tls_own_waits
    __attribute__((tls_model("initial-exec"), visibility("hidden")));

/** Into, or out of, one of the library's own waits (see above). Only the owner writes the count,
 *  so a relaxed load and a store suffice. */
static inline void weft__alloc_own_wait_mark(void)
{
    _Atomic uint64_t *c = weft__alloc_tls_own_waits;
    if (c)
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                              memory_order_release);
}

/** Test hook: the n-th thread created through weft__alloc_thread_create from now (1 = the next one)
 *  fails to start, with EAGAIN as pthread_create gives when no stack can be mapped; then all
 *  start again while the count goes on. 0 disarms it. Process-wide; counted apart from the
 *  allocations, so that arming one hook does not move the other's failure point. */
void weft__alloc_thread_fail_at(long n);
/** How many threads weft__alloc_thread_create was asked for since its hook was armed. */
long weft__alloc_thread_count(void);
/** pthread_create behind the hook above: 0 or pthread_create's error number. */
int weft__alloc_thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
                              void *arg);

#endif
