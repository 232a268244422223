// SPDX-License-Identifier: MIT
/* The allocation hook; see alloc.h. */
#include "alloc.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

_Thread_local _Atomic uint64_t *weft__alloc_tls_own_waits;

static _Atomic int tracking;
static _Atomic int failing; /* weft__alloc_fail_all */
static _Atomic long fail_at;
static _Atomic long counted;
static _Atomic long stall_at;
static void (*_Atomic stall_fn)(void);

void weft__alloc_fail_at(long n)
{
    atomic_store(&failing, 0);
    atomic_store(&counted, 0);
    atomic_store(&fail_at, n);
    atomic_store(&tracking, n != 0 || atomic_load(&stall_at) != 0);
}

void weft__alloc_stall_at(long n, void (*stall)(void))
{
    atomic_store(&counted, 0);
    atomic_store(&stall_fn, stall);
    atomic_store(&stall_at, n);
    atomic_store(&tracking, n != 0 || atomic_load(&fail_at) != 0);
}

void weft__alloc_fail_all(int on)
{
    weft__alloc_fail_at(0);
    atomic_store(&failing, on != 0);
    atomic_store(&tracking, on != 0);
}

long weft__alloc_count(void)
{
    return atomic_load(&counted);
}

int weft__alloc_should_fail(void)
{
    if (__builtin_expect(!atomic_load_explicit(&tracking, memory_order_relaxed), 1))
        return 0;
    if (atomic_load(&failing))
        return 1;
    /* Counting goes on after the failure, so that a test knows when n was past the last one. */
    long n = atomic_fetch_add(&counted, 1) + 1;
    if (n == atomic_load(&stall_at))
        atomic_load (&stall_fn)();
    return n == atomic_load(&fail_at);
}

/* The C library sets errno when an allocation fails; weft's calls never do (weft.h). No task
 * switches within one of these, so errno's address may be kept from start to end. */

void *weft__alloc_malloc(size_t n)
{
    int kept = errno;
    weft__alloc_own_wait_mark();
    void *p = weft__alloc_should_fail() ? NULL : malloc(n);
    weft__alloc_own_wait_mark();
    errno = kept;
    return p;
}

void *weft__alloc_calloc(size_t count, size_t n)
{
    int kept = errno;
    weft__alloc_own_wait_mark();
    void *p = weft__alloc_should_fail() ? NULL : calloc(count, n);
    weft__alloc_own_wait_mark();
    errno = kept;
    return p;
}

void *weft__alloc_realloc(void *p, size_t n)
{
    int kept = errno;
    weft__alloc_own_wait_mark();
    void *q = weft__alloc_should_fail() ? NULL : realloc(p, n);
    weft__alloc_own_wait_mark();
    errno = kept;
    return q;
}

void *weft__alloc_aligned(size_t align, size_t n)
{
    int kept = errno;
    weft__alloc_own_wait_mark();
    void *p =
        weft__alloc_should_fail() ? NULL : aligned_alloc(align, (n + align - 1) & ~(align - 1));
    weft__alloc_own_wait_mark();
    errno = kept;
    return p;
}

char *weft__alloc_strdup(const char *s)
{
    int kept = errno;
    weft__alloc_own_wait_mark();
    char *d = weft__alloc_should_fail() ? NULL : strdup(s);
    weft__alloc_own_wait_mark();
    errno = kept;
    return d;
}

static void *map(size_t bytes, int huge)
{
    if (weft__alloc_should_fail())
        return NULL;
    if (!huge) {
        char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return m == MAP_FAILED ? NULL : m;
    }
    /* Twice the size, then the aligned part is kept: THP needs 2 MiB alignment. */
    char *m = mmap(NULL, 2 * bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    char *aligned = (char *)(((uintptr_t)m + bytes - 1) & ~(uintptr_t)(bytes - 1));
    if (aligned > m)
        munmap(m, (size_t)(aligned - m));
    munmap(aligned + bytes, (size_t)(m + bytes - aligned));
    madvise(aligned, bytes, MADV_HUGEPAGE);
    return aligned;
}

void *weft__alloc_map(size_t bytes, int huge)
{
    weft__alloc_own_wait_mark();
    void *p = map(bytes, huge);
    weft__alloc_own_wait_mark();
    return p;
}

void weft__alloc_unmap(void *p, size_t bytes)
{
    weft__alloc_own_wait_mark();
    munmap(p, bytes);
    weft__alloc_own_wait_mark();
}

static _Atomic int thread_tracking;
static _Atomic long thread_fail_at;
static _Atomic long thread_counted;

void weft__alloc_thread_fail_at(long n)
{
    atomic_store(&thread_counted, 0);
    atomic_store(&thread_fail_at, n);
    atomic_store(&thread_tracking, n != 0);
}

long weft__alloc_thread_count(void)
{
    return atomic_load(&thread_counted);
}

int weft__alloc_thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
                              void *arg)
{
    if (atomic_load_explicit(&thread_tracking, memory_order_relaxed) &&
        atomic_fetch_add(&thread_counted, 1) + 1 == atomic_load(&thread_fail_at))
        return EAGAIN;
    return pthread_create(thread, attr, fn, arg);
}
