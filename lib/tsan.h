// SPDX-License-Identifier: MIT
/*
 * ThreadSanitizer annotations. ck's primitives are inline assembly, which TSan cannot see, so
 * every place where ck orders memory between threads on a path TSan checks says so with
 * weft__tsan_acquire / weft__tsan_release on the object that carries the order.
 */
#ifndef WEFT_TSAN_H
#define WEFT_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define WEFT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_TSAN 1
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define WEFT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_ASAN 1
#endif
#endif

#ifdef WEFT_TSAN
#include <sanitizer/tsan_interface.h>
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define weft__tsan_acquire(p) __tsan_acquire((void *)(p))
#define weft__tsan_release(p) __tsan_release((void *)(p))
/* Reads between these race their writers by design (a snapshot of counters that move). */
#define weft__tsan_ignore_reads_begin() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define weft__tsan_ignore_reads_end() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define weft__tsan_acquire(p) ((void)(p))
#define weft__tsan_release(p) ((void)(p))
#define weft__tsan_ignore_reads_begin() ((void)0)
#define weft__tsan_ignore_reads_end() ((void)0)
#endif

#endif
