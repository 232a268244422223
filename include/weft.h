// SPDX-License-Identifier: MIT
/** @file
 * weft — structured concurrency for C on a work-stealing runtime of green threads.
 *
 * Every task belongs to a scope; a scope never ends before its children. Scopes nest into a
 * tree across worker threads; cancelling a scope cancels its whole subtree, a deadline on a
 * scope bounds everything below it, and the scope collects the failures of its children.
 *
 * Conventions
 *   - Functions return 0 or a negative errno value. They never set errno: a call that makes
 *     system calls puts back the value the caller had, and a task's errno is its own across
 *     suspension points (it goes with the task to the thread it resumes on; read it through a
 *     fresh lookup there, see the migration hazard below). A join that runs children inline,
 *     as calls on its stack, leaves errno as they left it, as qsort does its comparator's.
 *     A NULL where an object is expected gives -EINVAL (or a neutral value, where the function
 *     returns no status).
 *   - A scope or semaphore pointer is dangling once released or destroyed. weft detects its use
 *     (-EINVAL) for as long as the record is not reused, which is not a guarantee: do not rely
 *     on it.
 *   - A task function is `int fn(void *arg)`: 0 is success, anything else is its failure code
 *     (by convention a negative errno value).
 *   - "Task-only" functions must be called from inside a weft task; from any other thread they
 *     return -EPERM (or a neutral value, where the function returns no status).
 *   - Each function says which threads may call it (task-only, any thread, or any thread that is
 *     not a weft task) and whether it suspends: parks the calling task, which may then resume on
 *     another OS thread (see the migration hazard below). With WEFT_CHAOS set in the environment
 *     (perturbed scheduling for tests, README.md "Testing"), spawns and joins may yield as well.
 *   - A failed spawn never runs its function and leaves `arg` with the caller. A spawn that
 *     returned 0 runs its function once, unless no stack can be had for the task when it first
 *     starts: then the task ends with -ENOMEM without running it (see weft_spawn).
 *   - No function here is async-signal-safe but weft_now. The others take spinlocks (a cancel,
 *     a semaphore, a spawn): called from a signal handler that interrupted a thread holding
 *     one, they spin for ever. A handler writes a byte to a pipe instead, which a task reads
 *     (weft_read, or weft_blocking) before it calls weft_scope_cancel (README.md, "Signals").
 *
 * Migration hazard: a task may resume on another OS thread after any suspension point
 * (weft_yield, weft_sleep_*, weft_scope_join, weft_sem_acquire, weft_blocking, ...). Never keep
 * the address of a thread-local variable across one: `errno` is one (glibc declares
 * __errno_location() const, so the compiler may reuse the address it got before the switch).
 * Read errno right after the call that set it, before the next suspension point.
 */
#ifndef WEFT_H
#define WEFT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks the functions the shared library exports (and nothing else: it is built with hidden
 *  visibility). Empty for users of the header. */
#if defined(WEFT_STATIC)
#define WEFT_API
#elif defined(WEFT_BUILDING)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

/** Lets the compiler check the format string of weft_fail against its arguments. */
#if defined(__GNUC__)
#define WEFT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WEFT_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------------------------------ */
/* Version and error texts                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* The version of this header. CMakeLists.txt reads these three lines for the project's version
 * (the package's, the pkg-config file's and the shared library's), so they are the one place a
 * release changes it. While the major version is 0, each minor version may change the ABI. */
#define WEFT_VERSION_MAJOR 0 /**< a change that breaks programs built for an earlier one */
#define WEFT_VERSION_MINOR 1 /**< additions; while MAJOR is 0, changes of the ABI too */
#define WEFT_VERSION_PATCH 0 /**< fixes that change no interface */

/** Stringizing helper of WEFT_VERSION_STRING. */
#define WEFT_VERSION_STR_(x) #x
/** Expands its argument before WEFT_VERSION_STR_ stringizes it. */
#define WEFT_VERSION_STR(x) WEFT_VERSION_STR_(x)
/** The header's version as text, "MAJOR.MINOR.PATCH". */
#define WEFT_VERSION_STRING                                                                        \
    WEFT_VERSION_STR(WEFT_VERSION_MAJOR)                                                           \
    "." WEFT_VERSION_STR(WEFT_VERSION_MINOR) "." WEFT_VERSION_STR(WEFT_VERSION_PATCH)
/** The header's version as one number, MAJOR * 10000 + MINOR * 100 + PATCH (0.1.0 is 100), for
 *  comparisons in the preprocessor: `#if WEFT_VERSION >= 100`. */
#define WEFT_VERSION (WEFT_VERSION_MAJOR * 10000 + WEFT_VERSION_MINOR * 100 + WEFT_VERSION_PATCH)

/**
 * Returns the version of the library the program runs with, packed as WEFT_VERSION packs it: it
 * differs from the WEFT_VERSION the program was compiled with when the dynamic loader found a
 * shared library of another release (a patch release, which keeps the ABI). Any thread, task or
 * not; does not suspend.
 */
WEFT_API int weft_version(void);

/**
 * A text for `code`, a result a weft function returned or a task failed with: for the codes
 * weft itself returns (-ECANCELED, -ETIMEDOUT, -EPERM, -EDEADLK, ...) what each means in weft's
 * terms; for any other negative errno value (the I/O calls hand on what the system said) the C
 * library's description of it; "success" for 0; and a generic text for anything else (a
 * positive code of the program's own, a number no errno value has, INT_MIN). Returns a
 * constant, static string in English, never NULL, valid for the life of the process: nothing is
 * formatted or stored, so any number of threads may call it at once (unlike strerror(3)). Any
 * thread, task or not; does not suspend.
 */
WEFT_API const char *weft_strerror(int code);

/* ------------------------------------------------------------------------------------------ */
/* Time                                                                                        */
/* ------------------------------------------------------------------------------------------ */

/** Nanoseconds, on the monotonic clock. */
typedef int64_t weft_time;

#define WEFT_NSEC ((weft_time)1)         /**< a nanosecond */
#define WEFT_USEC ((weft_time)1000)      /**< a microsecond, in nanoseconds */
#define WEFT_MSEC ((weft_time)1000000)   /**< a millisecond, in nanoseconds */
#define WEFT_SEC ((weft_time)1000000000) /**< a second, in nanoseconds */

/** A deadline that never passes. */
#define WEFT_NEVER INT64_MAX

/** Returns the current time of CLOCK_MONOTONIC in nanoseconds; deadlines are expressed on this
 *  clock. Never fails. Callable from any thread, and from a signal handler; does not suspend. */
WEFT_API weft_time weft_now(void);

/* ------------------------------------------------------------------------------------------ */
/* Runtime                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/** A runtime: its worker threads, blocking pool, timers and epoll set (opaque). */
typedef struct weft_runtime weft_runtime;
/** A scope: a node of the task tree, with its children, cancellation, deadline and error group
 *  (opaque; owned by the task that opened it). */
typedef struct weft_scope weft_scope;

/** A task function: 0 is success, any other value is the task's failure code. */
typedef int (*weft_fn)(void *arg);

/** Runtime configuration. Zero-initialise and set what you need; 0 means "the default". */
typedef struct weft_config {
    /** Worker OS threads, 1 to 256. Default: the CPUs the process may run on (its affinity
     *  mask, as taskset or a container's cpuset narrow it), at most 256. */
    unsigned workers;
    /** Pin worker i to CPU i (modulo the CPUs this process may use). Default: off: worker i
     *  still starts on that CPU, and is free to move from there (a thread left where it was
     *  created could be woken onto a CPU another worker keeps busy). */
    int pin_workers;
    /** Stack size of a task, in bytes, rounded up to whole pages. Default: 64 KiB.
     *  Stacks are reserved, not committed: a task touches only the pages it uses.
     *  Every task gets at least this much, a child that a join runs inline on its joiner's
     *  stack too (weft_scope_join). So that joins have room to run children inline, these
     *  stacks are mapped a quarter larger than this (at least 16 KiB more), which a task may
     *  use as well; an overflow report still gives this size.
     *  Below each stack lies a guard gap as large as this size, at least 64 KiB and at most
     *  1 MiB (address space only): a task that overflows its stack faults there and the process
     *  ends with a line naming the task, even through a frame (a large local array) that skips
     *  pages, as long as the frame is no larger than the gap. Build code with larger frames with
     *  -fstack-clash-protection (gcc, clang), which makes such a frame touch each of its pages
     *  in turn, so that it faults in the gap instead of reaching past it into memory of another
     *  task. */
    size_t stack_size;
    /** Most threads of the blocking pool (weft_blocking). Default: 64. */
    unsigned blocking_threads;
    /** A blocking-pool thread idle for this long exits (the pool starts more on demand).
     *  Default: 2 s. WEFT_NEVER (or any span too long to add to weft_now()): idle threads
     *  never exit, and sleep until work comes. Negative: -EINVAL. */
    weft_time blocking_idle_ns;
    /** A worker that runs one task for longer than this without reaching a suspension point
     *  is reported once on stderr. Time the task's worker waits for a CPU, or in the runtime's
     *  own calls (its allocations and locks), does not count; a blocking call of the task's
     *  does. Default: 100 ms. Negative: the watchdog is off. The report goes to `report`
     *  (below) when set. */
    weft_time watchdog_ns;
    /** A signal (SIGQUIT by convention) on which the runtime writes the text dump of its tree
     *  (weft_dump) on stderr, until it ends. The process's handler for that signal is replaced
     *  meanwhile (the previous one is put back when no runtime wants the signal any more), so
     *  choose one the program does not handle itself. The handler only writes a byte to a pipe
     *  (async-signal-safe); a thread of the process, started with the first runtime that names
     *  a signal and kept for the process's life, does the dump. Default 0: off. SIGKILL,
     *  SIGSTOP, a signal the C library keeps for itself (glibc: 32 and 33, those below
     *  SIGRTMIN), a signal of a thread's own fault (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP,
     *  SIGSYS: a handler that returns runs the faulting instruction again), negative or too
     *  large: -EINVAL. */
    int dump_signal;
    /** A file to write a trace of the runtime to (Chrome trace-event JSON, which
     *  ui.perfetto.dev and chrome://tracing open; lib/README.md, "Tracing", says what it holds):
     *  every task's spawn, start, runs, parks (and on what), wake-ups, steals, migrations and end,
     *  per worker, with scopes as nested slices. Created (or emptied) when the runtime starts,
     *  complete once it has stopped (weft_run returned, weft_runtime_shutdown returned), unless
     *  a write failed (a full disk): then it is cut short, and a WEFT_REPORT_TRACE report says
     *  so. NULL: the path in the environment variable WEFT_TRACE, read when the runtime starts,
     *  if set and not empty; else no trace. A `trace_path` that cannot be opened fails the start
     *  with open(2)'s code (-ENOENT, -EACCES, -ENXIO for a FIFO that no process reads, ...); a
     *  WEFT_TRACE that cannot be opened is said on stderr and the runtime runs untraced. Untraced,
     * the runtime pays nothing measurable for the feature; traced, a program of tiny tasks runs
     * three to four times as slowly. */
    const char *trace_path;
    /** Receives the runtime's reports instead of stderr, one line each (no newline at the end):
     *  `kind` says which (weft_report_kind), `line` is valid during the call only, `arg` is
     *  `report_arg`. NULL: each report is written to stderr with a newline.
     *
     *  A WEFT_REPORT_WATCHDOG report is called on the watchdog's own thread (`weft-watchdog`),
     *  which is no weft task: the callback may log, lock, allocate (never a weft call that needs
     *  a task, nor weft_runtime_shutdown of this runtime: -EDEADLK); while it runs the watchdog
     *  watches nothing, so it should return soon. Each task is reported once.
     *
     *  A WEFT_REPORT_TRACE report is called once, on the thread that ends the runtime (in
     *  weft_run, weft_runtime_shutdown, or a start that failed), after its workers have ended.
     *
     *  A WEFT_REPORT_OVERFLOW report is called inside the SIGSEGV (or SIGBUS) handler of the
     *  thread whose task overflowed its stack, on that thread's alternate signal stack (64 KiB),
     *  and the process aborts when it returns: the program's state is broken and the thread may
     *  have been interrupted anywhere, even inside malloc or a logger's lock. The callback may
     *  only do what is async-signal-safe (signal-safety(7)): write(2) the line to a descriptor
     *  opened beforehand (a log file, a socket to a log collector), fsync, and return. It must
     *  not call malloc, stdio, a logger that locks, nor any weft function but weft_now. */
    void (*report)(void *arg, int kind, const char *line);
    /** The first argument of `report`. */
    void *report_arg;
} weft_config;

/** What a report passed to weft_config.report is about. */
typedef enum weft_report_kind {
    WEFT_REPORT_WATCHDOG = 1, /**< a task held its worker past watchdog_ns */
    WEFT_REPORT_OVERFLOW = 2, /**< a task overflowed its stack; the process aborts next */
    WEFT_REPORT_TRACE = 3,    /**< a write of the trace file failed: the trace is cut short */
} weft_report_kind;

/**
 * Starts a runtime, runs `root(arg)` as its root task, waits for it and for everything it
 * started, shuts the runtime down and returns the root's status (0 or its failure code).
 * `cfg` may be NULL for the defaults. Blocks the calling OS thread until then; callable from
 * any thread that is not a weft task.
 *
 * Returns -EINVAL if `root` is NULL or `cfg` is out of range (workers above 256, stack_size
 * below 16 KiB or above 4 GiB), -ENOMEM if the runtime could not be built or no stack could be
 * mapped for the root task, -EAGAIN if a worker thread could not be created (the system's limit
 * on threads, or no memory for a thread's stack), -EMFILE or -ENFILE if the runtime's poller
 * (an epoll set and an eventfd) found no free descriptor, -ENOSPC if the system's epoll watches
 * are used up (fs.epoll.max_user_watches), and -EDEADLK if called from inside a
 * weft task (a nested run would block a worker of the outer runtime; spawn into a scope
 * instead). When the run fails so, `root` never ran and nothing is left running (a root may
 * return these codes too, as its own status).
 */
WEFT_API int weft_run(const weft_config *cfg, weft_fn root, void *arg);

/**
 * Starts a long-lived runtime whose workers wait for submitted work (weft_submit). Callable
 * from any thread that is not a weft task; does not suspend (it waits only for its threads to
 * be created).
 * Returns 0 and sets *out; -EINVAL for NULL `out` or a `cfg` out of range (as weft_run);
 * -ENOMEM; -EAGAIN if a worker thread could not be created (the system's limit on threads, or
 * no memory for a thread's stack); -EMFILE or -ENFILE without a free descriptor for the poller,
 * -ENOSPC without an epoll watch (as weft_run); -EDEADLK from inside a task. On failure *out is
 * left as it was and nothing is left running.
 */
WEFT_API int weft_runtime_start(weft_runtime **out, const weft_config *cfg);

/**
 * Cancels every task still running in `rt`, waits for all of them, stops the workers and frees
 * what the runtime holds. Handles of submitted work stay valid until released. Returns 0;
 * -EINVAL for NULL; -ESHUTDOWN if `rt` was shut down already or another call is shutting it down
 * (that call does the waiting; this one returns at once).
 *
 * Other threads may go on calling weft_submit on `rt` during the shutdown and after it: from the
 * moment shutdown is called every such call returns -ESHUTDOWN, for good, so a submitter may
 * simply stop when it is told so. A thread cannot know whether its next call comes before or
 * after another thread's shutdown returns, so to answer it the runtime object itself (under a
 * kilobyte) is kept, with everything else freed, until the process exits. A submission accepted
 * before the shutdown began is cancelled with the rest; its handle reports its status, or
 * -ECANCELED if it never started.
 *
 * Shielded scopes (weft_scope_opts.shield) are waited for, not cut short: the shutdown's cancel
 * reaches a task in one only once the shielded scope is joined, so a shielded body that waits
 * for ever holds the shutdown for ever. A shield is its owner's word that the body ends on its
 * own (a cleanup); one that may wait should carry its own timeout_ns, which bounds the shutdown
 * too.
 *
 * Blocks the calling OS thread. Callable from any thread that is not a weft task (of any
 * runtime: -EDEADLK, since a task of `rt` would wait for itself, and a task of another runtime
 * would hold its worker's thread until `rt`'s tasks end, which may wait for work queued behind
 * it), is not running a function `rt`'s blocking pool runs (-EDEADLK), and is not `rt`'s
 * watchdog, in a report callback (-EDEADLK: the shutdown ends that thread); a function another
 * runtime's blocking pool runs, and another runtime's report callback, may call it.
 */
WEFT_API int weft_runtime_shutdown(weft_runtime *rt);

/** Returns the number of worker threads of the runtime the calling task runs in; 0 outside a
 *  task. Any thread; does not suspend. */
WEFT_API unsigned weft_workers(void);

/** Returns the index (0..workers-1) of the worker running the calling task; -1 outside a task.
 *  The value may change after any suspension point. Any thread; does not suspend. */
WEFT_API int weft_worker_index(void);

/* ------------------------------------------------------------------------------------------ */
/* Metrics                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/** What one worker did (counts since it started) and holds (now). */
typedef struct weft_worker_metrics {
    uint64_t spawned;       /**< tasks spawned by tasks running on this worker (a fork of
                             *   weft_fork_join that became a task counts where it was taken) */
    uint64_t started;       /**< tasks that began running here (inline runs included) */
    uint64_t inline_runs;   /**< of those, children a join ran inline on its joiner's stack */
    uint64_t stolen;        /**< tasks this worker took from other workers' queues */
    uint64_t parked;        /**< parks of tasks running here (a wait that suspended) */
    uint64_t woken;         /**< wake-ups made by code running here (a release, a send, a timer) */
    weft_time busy_ns;      /**< time since the worker started, less idle_ns */
    weft_time idle_ns;      /**< time it had nothing to run: looking for work, or asleep */
    uint64_t spawn_queue;   /**< unstarted tasks queued on it now, forks of weft_fork_join
                             *   included */
    uint64_t ready_queue;   /**< runnable tasks that hold a stack (woken, yielded) queued now */
    uint64_t timers;        /**< timers armed on it now (sleeps, deadlines) */
    uint64_t cached_stacks; /**< stacks it keeps for reuse */
    uint64_t cached_tasks;  /**< task records it keeps for reuse */
    uint64_t cached_scopes; /**< scope records it keeps for reuse */
} weft_worker_metrics;

/** A runtime's metrics: the sum over its workers, and what belongs to none of them. */
typedef struct weft_metrics {
    unsigned workers;          /**< its worker threads */
    weft_worker_metrics total; /**< each field summed over the workers */
    uint64_t submitted;        /**< tasks submitted from outside (weft_submit, weft_run's root) */
    uint64_t woken_outside;    /**< wake-ups made by threads that are not its workers */
    uint64_t inject_queue;     /**< runnable tasks on the runtime-wide queue now */
    unsigned blocking_threads; /**< threads of the blocking pool now */
    unsigned blocking_idle;    /**< of those, waiting for a call */
    uint64_t blocking_queued;  /**< weft_blocking calls queued, no thread on them yet */
    uint64_t pool_stacks;      /**< stacks the runtime keeps for reuse beyond the workers' */
} weft_metrics;

/**
 * A snapshot of the metrics of `rt` (NULL: the runtime of the calling task) into `out`, of
 * `size` bytes (sizeof(weft_metrics); a smaller struct of an older header gets its fields only).
 * With `worker` not NULL, `nworker` entries (at most) of it get the metrics of workers 0, 1,
 * ...; out->workers says how many there are.
 *
 * Cheap enough to call every second in production: it reads each worker's own counters (which
 * they keep with plain increments, no shared atomic) without stopping anything, and takes the
 * blocking pool's lock for a moment. Counts are read while they move, so a snapshot is not one
 * instant: `started` may briefly run ahead of the `spawned` of another worker, and totals are
 * exact only once the runtime is quiet.
 *
 * Callable from any thread, a task included; does not suspend. Returns 0; -EINVAL for NULL
 * `out`, or `size` 0; -EPERM for a NULL `rt` outside a task; -ESHUTDOWN once the shutdown of
 * `rt` began. Must not race weft_runtime_shutdown of `rt` (which frees what it reads): stop
 * calling it first.
 */
WEFT_API int weft_runtime_metrics(weft_runtime *rt, weft_metrics *out, size_t size,
                                  weft_worker_metrics *worker, unsigned nworker);

/* ------------------------------------------------------------------------------------------ */
/* Scopes and tasks                                                                            */
/* ------------------------------------------------------------------------------------------ */

/** What a scope does when a child fails. */
typedef enum weft_policy {
    WEFT_FAIL_FAST = 0, /**< the first failure cancels the siblings (asyncio TaskGroup) */
    WEFT_COLLECT = 1,   /**< siblings keep running; every failure is kept */
} weft_policy;

/** Options of a scope. Zero-initialise; NULL options are all defaults. */
typedef struct weft_scope_opts {
    /** Name for diagnostics (copied). */
    const char *name;
    /** Relative timeout from the moment of opening; 0 = none. */
    weft_time timeout_ns;
    /** Absolute deadline on weft_now()'s clock; 0 = none; negative: -EINVAL. With timeout_ns
     *  too, the earlier wins.
     *  The effective deadline is never later than the enclosing scope's. */
    weft_time deadline;
    /** Failure policy. */
    weft_policy policy;
    /** At most this many children run at once; the others wait unstarted, holding no stack,
     *  and start in spawn order. A plain child the owner spawns waits as 16 bytes (no task
     *  record), so a million jobs under a limit of 64 cost little more than the 64. A child
     *  still waiting when the scope is cancelled starts all the same, once (its function may
     *  own `arg`), and finds the cancel at its first suspension point (weft_checkpoint). A
     *  child that gets its turn when no stack can be had for it ends with -ENOMEM instead,
     *  unrun (see weft_spawn). 0 = unlimited. */
    unsigned max_concurrency;
    /** Shield the scope's body from the cancellation of its ancestors. A cancel that arrives
     *  while shielded is delivered when the scope is joined. The scope's own deadline and an
     *  explicit weft_scope_cancel of the scope itself still apply. A runtime's shutdown waits
     *  for a shielded body as well: give one that may wait a timeout_ns. */
    int shield;
} weft_scope_opts;

/** Options of one spawn. Zero-initialise; NULL options are all defaults. */
typedef struct weft_spawn_opts {
    /** Name of the task for diagnostics (copied, truncated to 31 bytes). */
    const char *name;
    /** Stack size for this task, 16 KiB to 4 GiB (else the spawn returns -EINVAL); 0 = the
     *  runtime's. Guarded as weft_config.stack_size says: a gap as large as the stack (64 KiB
     *  to 1 MiB) below it; frames larger than that need -fstack-clash-protection. */
    size_t stack_size;
} weft_spawn_opts;

/**
 * Opens a scope nested in the calling task's innermost open scope (or in the scope the task
 * belongs to). Task-only. Returns 0 and sets *out; -EPERM outside a task; -EINVAL for NULL out
 * or bad options; -ENOMEM; -ECANCELED / -ETIMEDOUT if the enclosing scope is already cancelled
 * (a shielded scope opens all the same: that is where cleanup runs). Does not suspend.
 *
 * A scope is joined and released by the task that opened it. If that task returns first, the
 * runtime joins and releases it (join-before-exit holds even when the code forgets), newest
 * first, and the failures of the scopes it had to join are not lost: they go up with the task,
 * as weft_fail_group would hand them up, each keeping its origin (task, scope, message). Where
 * the task's own result is no failure (0, or the cancel code of a cancelled scope it was
 * spawned into, see weft_scope_error_count), its result becomes the join result of the first
 * of these scopes with failures, and its own scope records their failures. Where the task
 * failed on its own, it keeps its code, and its scope records that failure first, then theirs.
 * A scope the task joined itself but did not release hands nothing up (the join showed it what
 * failed). A scope joined only by the join of a scope it is nested in (see weft_scope_join)
 * showed its result to nobody: unless the task joins it itself (or closes it) before returning,
 * it hands its failures up as a forgotten scope does. The same holds for the root task
 * (weft_run's result) and for submitted tasks.
 */
WEFT_API int weft_scope_open(weft_scope **out, const weft_scope_opts *opts);

/**
 * Starts `fn(arg)` as a child task of `s`. Callable from any task of the runtime while `s` is not
 * yet joined. Returns 0; -EPERM outside a task; -EINVAL for NULL arguments or a joined or
 * released scope; -ECANCELED / -ETIMEDOUT if `s` is cancelled; -ENOMEM. On error `fn` never runs.
 * Task-only; does not suspend (WEFT_CHAOS may yield here, see the conventions at the top).
 *
 * Stacks. A child gets its stack when it first runs (a join may instead run it on the joiner's
 * stack, needing none). The spawn returns -ENOMEM when no stack could be had: a child of the
 * runtime's stack size needs one at hand on the spawning worker, which every spawn there
 * counts on until a child starts on it; a child of a size of its own (weft_spawn_ex) has its
 * stack mapped by the spawn. A child accepted all the same that finds no stack when it first
 * starts (memory or map entries ran out meanwhile; a child of a max_concurrency scope, which
 * has no stack of its own size mapped until its turn) does not wait for one: it ends at once
 * with -ENOMEM as its failure, without running `fn`. Its scope records that failure like any
 * child's (the join returns the first failure's code; fail-fast cancels the siblings), and the
 * error group names the task. `arg` is then never handed to `fn` and stays the spawner's: a
 * program whose `fn` frees `arg` and that must not leak it after a join that returned -ENOMEM
 * keeps track of which children started (a flag `fn` sets first).
 */
WEFT_API int weft_spawn(weft_scope *s, weft_fn fn, void *arg);

/** weft_spawn with options (a task name, a stack size): returns as weft_spawn does, and -EINVAL
 *  for a stack size out of range. Task-only, from any task of the runtime; does not suspend (as
 *  weft_spawn). A stack of the task's own size is mapped by the spawn: -ENOMEM if it cannot be.
 *  Into a max_concurrency scope it is mapped when the child's turn comes: a child that waits for
 *  its turn, or whose stack cannot be mapped as it takes a free slot (a slot taken is not given
 *  back), is accepted, and ends unrun with -ENOMEM if its stack cannot be mapped then (see
 *  weft_spawn). */
WEFT_API int weft_spawn_ex(weft_scope *s, weft_fn fn, void *arg, const weft_spawn_opts *opts);

/**
 * Waits until every child of `s` (and every scope nested in `s`) has ended. Only the task that
 * opened `s` may join it. Joining `s` first joins scopes opened after it that are still open;
 * their results are not part of what this join returns (join them to read theirs; see
 * weft_scope_open for what a task that returns without doing so hands up).
 *
 * Returns 0 when every child succeeded; the first failure's code (fail-fast and collect alike);
 * -ETIMEDOUT if the scope's own effective deadline passed; -ECANCELED if it was cancelled from
 * outside (explicitly or by an ancestor). Returns -EPERM from a task that does not own `s`,
 * -EINVAL for NULL or a released scope; joining again returns the same result as the first join.
 *
 * While waiting, the task parks; it may run its own unstarted children of `s` inline, never
 * unrelated work. It runs a child inline, below its own frames, only while its stack has the
 * child's whole stack size (weft_config.stack_size) left there; else the child starts on a stack
 * of its own. A child spawned with a stack size of its own never runs inline.
 * If the calling task is cancelled while waiting, `s` is cancelled too and the join still waits
 * for the children to end (join-before-exit), then returns the cancel code.
 * Task-only; suspends (it parks while children of `s` run elsewhere).
 */
WEFT_API int weft_scope_join(weft_scope *s);

/**
 * Frees a joined scope and its error group. Releasing a scope that was not joined joins it
 * first. Only the owner may release it. Task-only; suspends when it joins.
 *
 * Scopes end inside out: while a scope nested in `s` (one its owner opened after `s` and before
 * the join of `s`, even if joined since) is not released, the release returns -EBUSY and does
 * nothing, no join either. The nested scope reads its cancellation through `s`, and its owner
 * still holds a pointer to it; release it first. A scope opened after `s` was joined is not
 * nested in it: it stays open, or joined, as it is.
 *
 * Returns 0, -EINVAL, -EPERM, -EBUSY.
 */
WEFT_API int weft_scope_release(weft_scope *s);

/**
 * Joins `s` unless it was joined already, then releases it: weft_scope_join followed by
 * weft_scope_release, in one call (and for the common case on a shorter path than the two). The
 * usual end of a scope whose error group is not read after the join; to read it, join, read,
 * then release. Returns what the join returns, or -EPERM / -EINVAL as join does, or -EBUSY as
 * weft_scope_release does while a scope nested in `s` is not released (then nothing is joined
 * or released). Only the task that opened `s` may close it; suspends as weft_scope_join does.
 */
WEFT_API int weft_scope_close(weft_scope *s);

/**
 * Cancels `s` and its whole subtree, from any task or any thread, any number of times; not
 * from a signal handler (see the conventions at the top). Every task in the subtree sees
 * -ECANCELED at its suspension points from now on until it returns; parked ones are woken.
 * Returns 0, -EINVAL for NULL or a released scope. Does not suspend.
 */
WEFT_API int weft_scope_cancel(weft_scope *s);

/** Returns the scope the calling task was spawned into (for the root task of weft_run and for
 *  submitted tasks, the scope the runtime made for that submission); NULL outside a task. Any
 *  thread; does not suspend. */
WEFT_API weft_scope *weft_current_scope(void);

/** Why a scope or a task was cancelled. */
typedef enum weft_cancel_reason {
    WEFT_CANCEL_NONE = 0,     /**< not cancelled */
    WEFT_CANCEL_EXPLICIT = 1, /**< weft_scope_cancel on this scope */
    WEFT_CANCEL_DEADLINE = 2, /**< this scope's effective deadline passed */
    WEFT_CANCEL_FAILURE = 3,  /**< a child failed under the fail-fast policy */
    WEFT_CANCEL_PARENT = 4,   /**< an enclosing scope was cancelled (not by a deadline) */
    WEFT_CANCEL_SHUTDOWN = 5, /**< the runtime is shutting down */
} weft_cancel_reason;

/** Returns the cancellation reason of the calling task: WEFT_CANCEL_NONE if it may go on, and
 *  on a thread that is no task. Any thread; does not suspend. */
WEFT_API weft_cancel_reason weft_cancel_reason_self(void);

/** Returns the reason `s` was cancelled (WEFT_CANCEL_NONE if it was not, or `s` is NULL). Any
 *  task or thread while `s` is not released; does not suspend. */
WEFT_API weft_cancel_reason weft_scope_cancel_reason(const weft_scope *s);

/* ---- deadlines a program can read and move (asyncio's Timeout.when / reschedule / expired) ----
 */

/** Returns the scope's own deadline on weft_now()'s clock (from weft_scope_opts or
 *  weft_scope_set_deadline), WEFT_NEVER when it has none or `s` is NULL or released. Any task or
 *  thread, while `s` is not released; does not suspend. */
WEFT_API weft_time weft_scope_deadline(const weft_scope *s);

/** Returns the deadline that bounds the tasks of `s`: the earliest own deadline of `s` and its
 *  ancestors up to and including the nearest shielded scope (a shield cuts the chain),
 *  WEFT_NEVER when none (or `s` is NULL or released). Read at the call: it follows the moves of
 *  weft_scope_set_deadline anywhere on that chain. Any task or thread, while `s` is not
 *  released; does not suspend. */
WEFT_API weft_time weft_scope_effective_deadline(const weft_scope *s);

/**
 * Moves the own deadline of `s`, earlier or later, or removes it (`deadline` WEFT_NEVER or 0).
 * The change reaches the whole subtree at once: a deadline moved to now or into the past
 * cancels `s` and its subtree with WEFT_CANCEL_DEADLINE (-ETIMEDOUT); a deadline moved later (or
 * removed) re-arms the scope's timer, and a subtree not yet cancelled goes on, bounded by the
 * new deadline and by those of its ancestors and descendants. Cancellation is a state: a scope
 * already cancelled, by this deadline or anything else, stays cancelled; a move that races the
 * timer's firing ends one way or the other for the whole subtree (either cancelled with the
 * deadline reason, or going on under the new deadline).
 * Only the task that opened `s` may call it (-EPERM from another task or from a plain thread:
 * only the owner knows that `s` is still open). Returns 0; -EINVAL for NULL, a negative
 * deadline, or a scope joined or released; -ENOMEM when the timer could not be armed (the
 * deadline it had is kept). Task-only; does not suspend.
 *
 * The idle-timeout pattern: open a scope with a timeout, and at each event move its deadline to
 * weft_now() + the idle time; the scope times out that long after the last event.
 */
WEFT_API int weft_scope_set_deadline(weft_scope *s, weft_time deadline);

/** Returns 1 if the effective deadline of `s` passed and cancelled it (its cancel reason is
 *  WEFT_CANCEL_DEADLINE), else 0; asyncio's Timeout.expired(). Any task or thread while `s` is
 *  not released; does not suspend. */
WEFT_API int weft_scope_expired(const weft_scope *s);

/**
 * A cheap cancellation poll for loops that do not otherwise suspend: 0 if the task may go on,
 * else -ECANCELED or -ETIMEDOUT. Does not yield, but tells the watchdog the task is alive, and
 * every few calls fires due timers and compares the effective deadline of the task's scope with
 * the clock itself, so a deadline that passes reaches a loop that polls only here even when the
 * timer that holds it sits on a worker stuck elsewhere. -EPERM outside a task. Task-only; does
 * not suspend.
 */
WEFT_API int weft_checkpoint(void);

/** Lets other tasks run: the task goes behind the work queued on its worker, and when there is
 *  none, behind work it takes from another worker (a task waiting behind a neighbour that never
 *  suspends runs here instead). Returns 0, or -ECANCELED / -ETIMEDOUT (without yielding) once
 *  the task is cancelled, -EPERM outside a task. Task-only; suspends. */
WEFT_API int weft_yield(void);

/** Parks the task for `ns` nanoseconds. 0, -ECANCELED, -ETIMEDOUT, -EPERM, -ENOMEM. Task-only;
 *  suspends. */
WEFT_API int weft_sleep_for(weft_time ns);

/** Parks the task until weft_now() >= deadline. 0, -ECANCELED, -ETIMEDOUT, -EPERM, -ENOMEM.
 *  Task-only; suspends. */
WEFT_API int weft_sleep_until(weft_time deadline);

/** Returns the name of the calling task ("root" for the root task, "task-<id>" if none was
 *  given; "" outside a task), valid while the task runs. Any thread; does not suspend. */
WEFT_API const char *weft_task_name(void);

/** Returns a process-unique id of the calling task; 0 outside a task. Any thread; does not
 *  suspend. */
WEFT_API uint64_t weft_task_id(void);

/* ------------------------------------------------------------------------------------------ */
/* Error groups                                                                                */
/* ------------------------------------------------------------------------------------------ */

/** Longest message kept with a failure (bytes, including the terminator); longer ones are
 *  truncated. */
#define WEFT_ERROR_MESSAGE_MAX 256

/** One failure of a child task. */
typedef struct weft_error {
    int code;            /**< the non-zero status the task returned */
    const char *message; /**< from weft_fail, or "" */
    const char *task;    /**< the failing task's name */
    uint64_t task_id;    /**< the failing task's id */
    const char *scope;   /**< name of the scope the task failed in ("" if unnamed) */
} weft_error;

/**
 * Records a formatted message with the calling task's failure and returns `code`, so that a task
 * fails with `return weft_fail(-EIO, "GET %s: %d", url, st);`. The message is truncated to
 * WEFT_ERROR_MESSAGE_MAX. It goes with `code`: a task that then ends with another code (it
 * handled that failure, or chose another) fails without it, and a later weft_fail replaces it.
 * Outside a task it only returns `code`. A `code` of 0 is replaced by
 * -EINVAL (a failure must have a non-zero code). Any thread (it records a message only in a
 * task); does not suspend.
 */
WEFT_API int weft_fail(int code, const char *fmt, ...) WEFT_PRINTF(2, 3);

/**
 * Returns the number of failures recorded by `s` (every failure of a child, in the order they
 * happened; children that ended only because of the scope's cancellation are not failures); 0 for
 * NULL.
 *
 * This and the two readers below may be called from any thread, task or not, at any time until
 * `s` is released (reading a released scope is invalid use), also while children of `s` are
 * still failing. They never suspend and take no lock. A read before the join sees the failures
 * recorded so far: a failure is counted only once its record is complete, the count never
 * decreases, and a record, once counted, never changes and stays at the same address until the
 * release. The group is final once weft_scope_join has returned. A failure whose record cannot
 * be allocated (the process is out of memory) is not kept: the count is then lower than the
 * children that failed, while the join still returns the first failure's code.
 */
WEFT_API size_t weft_scope_error_count(const weft_scope *s);

/** Returns the i-th failure of `s`, or NULL if `s` is NULL or i is not below the count now.
 *  Complete, and valid until the scope is released, even while other children still fail. Any
 *  task or thread, as weft_scope_error_count says; does not suspend. */
WEFT_API const weft_error *weft_scope_error(const weft_scope *s, size_t i);

/** Returns the number of failures of `s` whose code is `code` (the except* split), among those
 *  recorded when it is called; 0 for NULL. Any task or thread, as weft_scope_error_count says;
 *  does not suspend. */
WEFT_API size_t weft_scope_error_count_code(const weft_scope *s, int code);

/**
 * Hands the failures of the joined scope `s` up: the calling task fails with all of them except
 * those whose code is in `handled` (n_handled entries; may be NULL), each keeping its origin
 * (task, scope, message). Returns the code to return from the task: the first remaining
 * failure's code, or 0 if none remains. Use as `return weft_fail_group(s, handled, 1);`: the
 * group goes with its failures' codes, as a weft_fail message goes with its own, and a task
 * that ends with a code none of them has (a cancel's, or one of its own) fails with that code
 * alone, or, ending by a cancel of its scope, does not fail. Handed up so, `s` counts as seen by
 * its owner, also when only the join of an enclosing scope joined it (weft_scope_open: it is not
 * handed up a second time when the task returns). -EINVAL for a NULL or unjoined scope, -EPERM
 * outside a task. Task-only; does not suspend.
 */
WEFT_API int weft_fail_group(weft_scope *s, const int *handled, size_t n_handled);

/* ------------------------------------------------------------------------------------------ */
/* Semaphores (concurrency tokens)                                                             */
/* ------------------------------------------------------------------------------------------ */

/** A semaphore of tokens that parks tasks (opaque). */
typedef struct weft_sem weft_sem;

/** Creates a semaphore holding `tokens` tokens, which is also the most it may hold (a release
 *  above it is -EOVERFLOW; weft_sem_create_max sets a larger one): with 0 it never holds one.
 *  0, -EINVAL, -ENOMEM. Any thread; does not suspend. */
WEFT_API int weft_sem_create(weft_sem **out, unsigned tokens);

/**
 * Frees a semaphore no task is inside weft_sem_acquire on. Returns -EBUSY, and frees nothing,
 * while a task waits on it or has been woken (by a release, or a cancel) and has not yet returned
 * from weft_sem_acquire: that task still takes the semaphore's lock. So a destroy right after
 * handing the last token to a waiter may be refused; call it again once the waiters have
 * returned (a join of their scope sees to that). Returns 0 once freed; then no call on it may
 * follow or still be in progress on another thread, and tokens still held go with it (they must
 * not be released). -EINVAL for NULL. Callable from any thread; never suspends.
 */
WEFT_API int weft_sem_destroy(weft_sem *sem);

/**
 * Takes a token, parking the task (never the OS thread) while none is free; waiters are served
 * in FIFO order. Returns 0; -ECANCELED / -ETIMEDOUT if the task is (or becomes) cancelled, in
 * which case it holds no token and its place passes to the next waiter; -EPERM outside a task;
 * -EINVAL for NULL; -ENOMEM if the wait could not be set up (the task's scopes are linked into
 * the tree on its first wait, so that a cancel reaches it), in which case it holds no token and
 * has left the queue, unless a release handed it one meanwhile (then 0). Task-only; suspends.
 */
WEFT_API int weft_sem_acquire(weft_sem *sem);

/** Takes a token if one is free without waiting: 0, or -EAGAIN; -EINVAL for NULL. Callable
 *  from any thread; does not suspend. */
WEFT_API int weft_sem_try_acquire(weft_sem *sem);

/** Returns a token; the first waiter, if any, gets it. Callable from any thread; does not
 *  suspend. Returns 0, or -EOVERFLOW if that would hold more tokens than the semaphore may hold
 *  (a token handed to a waiter that has not run yet counts: a cancel may make it give it back);
 *  -EINVAL for NULL. */
WEFT_API int weft_sem_release(weft_sem *sem);

/** Returns the number of tokens free now (0 for NULL). Any thread; does not suspend. */
WEFT_API unsigned weft_sem_available(const weft_sem *sem);

/** Creates a semaphore holding `initial` tokens that can hold at most `max` (weft_sem_release
 *  beyond it is -EOVERFLOW): a semaphore created with 0 of 1 is a signal a task waits for and
 *  any thread gives. 0; -EINVAL for NULL `out` or `initial` > `max`, or `max` 0; -ENOMEM. Any
 *  thread; does not suspend. */
WEFT_API int weft_sem_create_max(weft_sem **out, unsigned initial, unsigned max);

/* ------------------------------------------------------------------------------------------ */
/* Mutexes and events                                                                          */
/* ------------------------------------------------------------------------------------------ */

/** A mutex held by a task, whose waiters park (opaque). */
typedef struct weft_mutex weft_mutex;

/** Creates an unlocked mutex. 0, -EINVAL, -ENOMEM. Any thread; does not suspend. */
WEFT_API int weft_mutex_create(weft_mutex **out);
/** Frees an unlocked mutex no task waits on: 0; -EBUSY while locked or waited on (nothing is
 *  freed); -EINVAL. Any thread; does not suspend. */
WEFT_API int weft_mutex_destroy(weft_mutex *m);
/** Locks `m`, parking the task (never the OS thread) while another holds it; waiters get it in
 *  FIFO order. The lock belongs to the calling task. 0; -EDEADLK if the task holds it already;
 *  -ECANCELED / -ETIMEDOUT (then the task does not hold it); -EPERM outside a task; -EINVAL;
 *  -ENOMEM as weft_sem_acquire. Task-only; suspends. */
WEFT_API int weft_mutex_lock(weft_mutex *m);
/** Locks `m` if it is free: 0, -EBUSY, -EPERM outside a task, -EINVAL. Task-only; does not
 *  suspend. */
WEFT_API int weft_mutex_trylock(weft_mutex *m);
/** Unlocks `m`, handing it to the first waiter. 0; -EPERM if the calling task does not hold
 *  it (nothing changes: a stray unlock is an error, not a corruption); -EINVAL. Task-only; does
 *  not suspend. A task that ends holding a mutex leaves it locked for good: no other task holds
 *  it or can unlock it (-EPERM), its lockers wait until cancelled or past their deadlines, and a
 *  debug build names the task as it ends. */
WEFT_API int weft_mutex_unlock(weft_mutex *m);

/** An event: set by any thread, waited for by tasks (opaque). */
typedef struct weft_event weft_event;

/** Creates an event, not set. 0, -EINVAL, -ENOMEM. Any thread; does not suspend. */
WEFT_API int weft_event_create(weft_event **out);
/** Frees an event no task waits on: 0, -EBUSY (nothing freed), -EINVAL. The tasks that a
 *  weft_event_set called by a task of their runtime woke wait on it no more once the set
 *  returned, even before they run again; those a set from a plain thread woke, once they have
 *  run again. Any thread; does not suspend. */
WEFT_API int weft_event_destroy(weft_event *e);
/** Sets the event: every task waiting on it wakes, and waits return at once until it is reset.
 *  0, -EINVAL. Any thread, task or not, and any number of times; does not suspend. */
WEFT_API int weft_event_set(weft_event *e);
/** Clears the event. 0, -EINVAL. Any thread; does not suspend. */
WEFT_API int weft_event_reset(weft_event *e);
/** Returns 1 if the event is set, 0 if not (or NULL). Any thread; does not suspend. */
WEFT_API int weft_event_is_set(const weft_event *e);
/** Parks until the event is set (at once if it is): 0; -ECANCELED / -ETIMEDOUT; -EPERM outside
 *  a task; -EINVAL; -ENOMEM as weft_sem_acquire. Task-only; suspends. */
WEFT_API int weft_event_wait(weft_event *e);

/* ------------------------------------------------------------------------------------------ */
/* Channels                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/*
 * A channel carries items of one fixed size, copied in and out, between any tasks (and, with the
 * try calls, any threads). It holds up to `capacity` items; with capacity 0 it holds none, and a
 * send completes only when a receiver takes the item (a rendezvous). Waiting senders are served
 * in FIFO order, and so are waiting receivers.
 *
 * Closing: weft_chan_close stops sends at once (they return -EPIPE, and so do senders waiting
 * then: their items were not delivered); receivers take what is buffered, then get -EPIPE.
 *
 * Cancellation-safe: a send that returns a code other than 0 did not deliver its item; a receive
 * that returns one took nothing. An item is never lost or delivered twice. A send or receive
 * that completed returns 0 even if the task was cancelled meanwhile (the next suspension point
 * reports the cancel).
 */
/** A channel of fixed-size items (opaque). */
typedef struct weft_chan weft_chan;

/** Creates a channel of items of `item_size` bytes (1 to 65,536) holding up to `capacity`
 *  items (0: a rendezvous). 0, -EINVAL, -ENOMEM. Any thread; does not suspend. */
WEFT_API int weft_chan_create(weft_chan **out, size_t item_size, size_t capacity);
/** Frees a channel no task waits on: 0; -EBUSY while a task waits or is on its way out of a
 *  wait on it (nothing freed); -EINVAL. A send or receive that a call made by a task of its own
 *  runtime completed (a receive, a send, a close) is out of it once that call returned, even
 *  before its task runs again; one completed from a plain thread or another runtime, and a
 *  select, once its task has run again. Items still buffered go with it. Any thread; does not
 *  suspend. */
WEFT_API int weft_chan_destroy(weft_chan *c);
/** Copies `item` into the channel, parking while it is full (or, for a rendezvous, until a
 *  receiver takes it). 0; -EPIPE when the channel is closed (before or while waiting); -ECANCELED
 *  / -ETIMEDOUT; -EPERM outside a task; -EINVAL; -ENOMEM as weft_sem_acquire. Task-only;
 *  suspends. */
WEFT_API int weft_chan_send(weft_chan *c, const void *item);
/** Takes the oldest item into `item`, parking while there is none. 0; -EPIPE when the channel is
 *  closed and empty; -ECANCELED / -ETIMEDOUT; -EPERM outside a task; -EINVAL; -ENOMEM.
 *  Task-only; suspends. */
WEFT_API int weft_chan_recv(weft_chan *c, void *item);
/** weft_chan_send without waiting: 0; -EAGAIN when it would wait; -EPIPE; -EINVAL. Any thread
 *  (a plain thread can feed a pipeline); does not suspend. */
WEFT_API int weft_chan_try_send(weft_chan *c, const void *item);
/** weft_chan_recv without waiting: 0; -EAGAIN when it would wait; -EPIPE; -EINVAL. Any thread;
 *  does not suspend. */
WEFT_API int weft_chan_try_recv(weft_chan *c, void *item);
/** Closes the channel (see above). 0; -EALREADY if it was closed; -EINVAL. Any thread; does not
 *  suspend. */
WEFT_API int weft_chan_close(weft_chan *c);
/** Returns the number of items buffered now (0 for NULL). Any thread; does not suspend. */
WEFT_API size_t weft_chan_len(const weft_chan *c);

/** What a weft_select clause does. */
typedef enum weft_select_kind {
    WEFT_SELECT_SEND = 1, /**< send *item on chan */
    WEFT_SELECT_RECV = 2, /**< receive into *item from chan */
} weft_select_kind;

/** One clause of a weft_select. */
typedef struct weft_select_op {
    weft_chan *chan;       /**< the channel of this clause */
    weft_select_kind kind; /**< send or receive */
    void *item;            /**< the item to send, or where to receive one */
    int result; /**< set for the clause that happened: 0, or -EPIPE (the channel was closed) */
} weft_select_op;

/** weft_select's flag: if no clause can happen at once, return -EAGAIN instead of waiting (Go's
 *  `default:`). */
#define WEFT_SELECT_NOWAIT 1

/**
 * Waits until exactly one of the `n` clauses can happen, does it, and returns its index; its
 * `result` says whether it moved an item (0) or found its channel closed (-EPIPE: a send that
 * did not deliver, or a receive from a closed and empty channel). Among clauses ready at once,
 * one is chosen at random, so that none starves. -EAGAIN with WEFT_SELECT_NOWAIT when none is
 * ready; -ECANCELED / -ETIMEDOUT (no clause happened); -EINVAL for NULL, n out of 1..64, a
 * clause without a channel, item or valid kind, or a flag other than WEFT_SELECT_NOWAIT; -EPERM
 * outside a task; -ENOMEM as weft_sem_acquire. A channel may appear in several clauses. Task-only;
 * suspends unless WEFT_SELECT_NOWAIT.
 */
WEFT_API int weft_select(weft_select_op *ops, int n, int flags);

/* ------------------------------------------------------------------------------------------ */
/* Fork-join                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/**
 * Runs `forked(forked_arg)` and `here(here_arg)`, perhaps at the same time, and returns once both
 * have returned: the two-way split of a divide-and-conquer program (rayon's join, oneTBB's
 * parallel_invoke), at the cost of a pair of plain calls when nothing takes the fork.
 *
 * `here` runs at once, as a plain call of the calling task. `forked` is first offered to other
 * workers: as a small record in this call's frame, not a task. If it is still there when `here`
 * returns, the caller runs it too, as a plain call: no task record, no stack, no id is made.
 * Otherwise it was taken, by an idle worker or, where `here` suspended, by the caller's own
 * worker, and runs as a task of its own (unnamed: "task-<id>", on a stack of the caller's stack
 * size), a child of the caller's innermost open scope (or of the scope the caller was spawned
 * into): cancelled and timed out with that scope, and counted in it, so that a join of it waits
 * for it; the caller then parks until it ends. Where no record or stack can be had for it there,
 * it goes back to the caller, which runs it as above. So `forked` must not need what
 * the caller holds, as a child task must not: a mutex the caller locked is -EDEADLK to it when
 * the caller runs it and a wait that never ends when another task does; weft_task_id,
 * weft_task_name and weft_current_scope answer for whichever task runs it. Either way `forked`
 * always runs, once, and this call does not return before it has ended: a cancel of the caller's
 * scopes does not cut the wait short (the functions see it at their suspension points), so
 * `forked_arg` may live in the caller's frame.
 *
 * Returns `forked`'s result if it is not 0, else `here`'s. A message that `forked` recorded with
 * weft_fail comes back to the caller with its code wherever it ran, as if the caller had recorded
 * it after `here` returned (a later weft_fail replaces an earlier one; the message goes with its
 * code, whichever function's result the caller ends with). Scopes `forked` opens and leaves
 * open end with it, joined and released as a task's are at its end; those `here` leaves open
 * stay the caller's. Each function's errno is as it left it. Under a max_concurrency scope (the
 * caller's innermost open scope limited) the two run one after the other on the caller, `here`
 * first, since a task of its own would not wait for its turn; so they do where the caller's queue
 * cannot grow to take the fork (no memory). Both run on the caller's stack when they run there,
 * as nested plain calls would: a recursion of weft_fork_join is as deep on the stack as the same
 * recursion of plain calls.
 *
 * Returns as said; -EPERM outside a task and -EINVAL for a NULL function (neither then runs).
 * Task-only; suspends when `forked` runs elsewhere and has not ended when `here` returns (and
 * wherever the functions themselves suspend).
 */
WEFT_API int weft_fork_join(weft_fn forked, void *forked_arg, weft_fn here, void *here_arg);

/* ------------------------------------------------------------------------------------------ */
/* Parallel loops                                                                              */
/* ------------------------------------------------------------------------------------------ */

/** The body of a parallel loop over the indices [begin, end): 0, or a failure code. */
typedef int (*weft_range_fn)(int64_t begin, int64_t end, void *arg);

/**
 * Runs `fn` over [begin, end) cut into pieces that run in parallel, as tasks of a scope of its
 * own: it returns only when every piece has ended. The range is split in halves, each half a
 * task that may be stolen, down to pieces of `grain` indices (0: chosen from the range and the
 * number of workers, so that no grain size is needed). A piece that fails stops the loop like a
 * failing child of a fail-fast scope (pieces not started do not start; running ones see the
 * cancel at their suspension points) and its code is returned; a cancel or deadline of the
 * calling task's scope stops it the same way. Returns 0; the first failure; -ECANCELED /
 * -ETIMEDOUT; -EINVAL for NULL `fn`, `end` < `begin` or a negative grain; -EPERM outside a task;
 * -ENOMEM. An empty range returns 0 at once. Task-only; suspends.
 * A message the first failing piece recorded with weft_fail comes back with its code, as if the
 * caller had recorded it: a caller that returns that code fails with the message, whichever task
 * ran the piece. Pieces' other messages, and what they hand up with weft_fail_group, are dropped.
 * Scopes a piece opens and leaves open end with the piece, joined and released as a task's are
 * at its end, and the first failure among them is the piece's (a loop of a single piece runs it
 * as a plain call of the caller, whose scopes they then are).
 */
WEFT_API int weft_parallel_for(int64_t begin, int64_t end, int64_t grain, weft_range_fn fn,
                               void *arg);

/** Computes a piece's partial result into `partial` (result_size bytes, holding the identity at
 *  first): 0 or a failure code. */
typedef int (*weft_map_fn)(int64_t begin, int64_t end, void *partial, void *arg);
/** Folds `partial` into `acc` (both result_size bytes); must be associative. */
typedef void (*weft_combine_fn)(void *acc, const void *partial, void *arg);

/**
 * A parallel reduce over [begin, end): pieces as in weft_parallel_for, each mapped into a
 * partial result that starts as a copy of `identity`, partials folded with `combine` in index
 * order (so that a combine that is associative but not commutative gives the serial answer).
 * The result goes to `result` (result_size bytes, 1 to 4,096) only when every piece succeeded;
 * for an empty range it is a copy of `identity`. Returns as weft_parallel_for, and -EINVAL also
 * for NULL `identity`, `map`, `combine` or `result`. Task-only; suspends.
 */
WEFT_API int weft_parallel_reduce(int64_t begin, int64_t end, int64_t grain, size_t result_size,
                                  const void *identity, weft_map_fn map, weft_combine_fn combine,
                                  void *arg, void *result);

/* ------------------------------------------------------------------------------------------ */
/* I/O on file descriptors                                                                    */
/* ------------------------------------------------------------------------------------------ */

/*
 * A task that waits for a socket, a pipe or any other pollable descriptor parks like every other
 * wait: its worker runs other tasks, and the wait ends when the descriptor is ready, when the
 * task's scope is cancelled (-ECANCELED), or when its effective deadline passes (-ETIMEDOUT).
 * The runtime's workers poll the descriptors (epoll) when they are idle, and now and then while
 * busy, so readiness is never starved by CPU work, nor by a worker held in a blocking call while
 * another is idle.
 *
 * The rules:
 *   - Descriptors must be non-blocking (O_NONBLOCK). weft_accept gives its new descriptors
 *     O_NONBLOCK and O_CLOEXEC; weft_fd_nonblock sets it on any other. A call on a blocking
 *     descriptor still works, but blocks its worker while it lasts.
 *   - Close with weft_close a descriptor any task has waited on: it wakes every task still waiting
 *     on it (their calls return -EBADF) before the number can be reused, and drops the runtime's
 *     registration. A plain close() leaves the registration behind, and a later descriptor with
 *     the same number may then wait for ever (until cancelled or its deadline).
 *   - A descriptor is waited on by the tasks of one runtime: the first wait registers it with
 *     that runtime, until weft_close or the runtime's end. A task of another runtime that would
 *     have to wait on it gets -EINVAL (a call that need not wait still works).
 *   - At most one task waits to read and one to write on a descriptor at a time; a second one
 *     gets -EBUSY at once. (Two readers of one stream interleave its bytes: a bug to report, not
 *     to queue.)
 *   - No SIGPIPE: weft's threads block it, sends use MSG_NOSIGNAL, and a write to a descriptor
 *     whose reader is gone returns -EPIPE. Code that writes on plain threads of its own still
 *     gets the signal, as it always did.
 *   - Every call returns a byte count (or a descriptor, or 0) or a negative errno value, and never
 *     sets errno. -EAGAIN never comes back from the calls that wait: MSG_DONTWAIT in `flags`
 *     makes no difference, the call still waits. Other flags go to the system call as they are
 *     (MSG_WAITALL may still return a short count; a read or receive of 0 bytes returns 0 at once).
 *   - A read whose descriptor's read side is shut (shutdown(SHUT_RD), a peer's end) returns what
 *     a blocking one would, where the kernel would answer a non-blocking one with EAGAIN: 0 from
 *     a datagram socket's receive, -EINVAL from the accept of a UNIX-domain listener shut down.
 *   - A vectored write of more than IOV_MAX buffers (weft_writev_all) goes in turns, so on a
 *     datagram or seqpacket socket it is several messages: keep a message within IOV_MAX.
 *   - Descriptors numbered 1,048,576 and above cannot be waited on: a call that would have to
 *     wait on one returns -EBADF.
 *   - A read of a TCP socket (weft_read, weft_recv, weft_recvfrom) that returned less than it asked
 *     emptied the socket's receive queue, so the next read of it waits for data at once, without
 *     the system call that would have found none: one system call fewer per request for a server
 *     that reads requests into a large buffer. Where a short read does not mean that (urgent data,
 *     the peer's end of stream, an error; a peek or a read of the error queue; any socket but TCP,
 *     any other descriptor), the next read tries as usual. A program that reads urgent data
 *     (MSG_OOB) does so through weft_recv, which notes it; a plain recv(2) with MSG_OOB on a
 *     descriptor that weft reads too may leave the bytes behind the urgent mark unread until more
 *     data comes.
 * All of them are task-only (-EPERM elsewhere) and suspend, except weft_fd_nonblock and
 * weft_close, which any thread may call and which do not suspend.
 */

/** Readiness bits for weft_fd_wait. */
#define WEFT_READABLE 1 /**< data to read, a connection to accept, the peer closed, or an error */
#define WEFT_WRITABLE 2 /**< room to write, a connect finished, or an error */

/**
 * Parks the calling task until `fd` is ready for one of `events` (WEFT_READABLE,
 * WEFT_WRITABLE, or both), until `deadline` (weft_now() clock; WEFT_NEVER: none), or until the
 * task is cancelled. Returns the ready bits among `events` (> 0); -ETIMEDOUT when `deadline` or
 * the scope's effective deadline passed; -ECANCELED; -EBADF if `fd` is not open, or was closed
 * with weft_close meanwhile; -EBUSY if another task already waits on `fd` in that direction;
 * -EINVAL for `events` without either bit or with any other, or for a descriptor registered with
 * another runtime
 * when it would have to wait (one ready already gives its bits); -EPERM outside a task;
 * -ENOMEM; or what epoll_ctl said of `fd` (-EPERM for a regular file, which is always ready:
 * read it directly). Task-only; suspends.
 */
WEFT_API int weft_fd_wait(int fd, int events, weft_time deadline);

/**
 * The readiness edges of a descriptor as weft_fd_mark saw them, for weft_fd_wait_since. The
 * fields are the runtime's: copy the struct, do not interpret it.
 */
typedef struct weft_fd_edges {
    uint32_t gen;    /**< the descriptor's registration (weft_close moves it on) */
    uint32_t seq[2]; /**< edges seen so far: readable, writable */
} weft_fd_edges;

/**
 * For code that does its I/O on `fd` itself (a client library such as libpq, OpenSSL or c-ares)
 * and asks weft only to wait: notes in `*edges` the readiness edges of `fd` seen so far,
 * registering `fd` with the caller's runtime at its first use. Call it before the I/O that may
 * find `fd` not ready (before the request whose reply the task will wait for, or before a read
 * that may say EAGAIN), then weft_fd_wait_since(fd, ..., edges, ...): readiness that comes in
 * between is not lost, and the wait asks the kernel nothing, where weft_fd_wait spends a system
 * call to learn whether `fd` is ready now. Returns 0; -EINVAL for a NULL `edges` or a descriptor
 * registered with another runtime; -EBADF; -EPERM outside a task, or for a regular file, which
 * is always ready; -ENOMEM. Task-only; does not suspend, except while a weft_close of `fd` by
 * another task or thread is under way: the first use then lets other tasks run until that close
 * has ended, and registers what `fd` names by then (-EBADF if nothing).
 */
WEFT_API int weft_fd_mark(int fd, weft_fd_edges *edges);

/**
 * Parks the calling task until readiness for one of `events` (WEFT_READABLE, WEFT_WRITABLE, or
 * both) comes to `fd` after `since` (from weft_fd_mark on the same `fd`), until `deadline`
 * (weft_now() clock; WEFT_NEVER: none), or until the task is cancelled. Returns at once when an
 * edge came already. Edge-triggered: readiness that was there before the mark, and that no new
 * data or room renewed, does not end the wait; so mark before the I/O that emptied the
 * descriptor (or filled it), not after, or use weft_fd_wait. Returns the bits among `events`
 * whose edges moved (> 0; on a spurious edge the caller's I/O may still find nothing: mark and
 * wait again); -ETIMEDOUT when `deadline` or the scope's effective deadline passed;
 * -ECANCELED; -EBADF if `fd` was closed with weft_close since the mark (or was never marked);
 * -EBUSY if another task already waits on `fd` in that direction; -EINVAL for `events` without
 * either bit or with any other, a NULL `since`, or a descriptor registered with another runtime
 * when it would have to wait (an edge that came already gives its bits); -EPERM outside a task;
 * -ENOMEM (no room to record the wait's deadline or its cancel). Task-only; suspends.
 */
WEFT_API int weft_fd_wait_since(int fd, int events, const weft_fd_edges *since, weft_time deadline);

/** Sets O_NONBLOCK on `fd`. Returns 0 or a negative errno value (-EBADF). Any thread; does not
 *  suspend. */
WEFT_API int weft_fd_nonblock(int fd);

/**
 * Wakes every task waiting on `fd` (their calls return -EBADF), forgets the runtime's
 * registration of it, and closes it. Returns what close() returned: 0 or a negative errno value
 * (the descriptor is closed even then, as close() leaves it). Any thread, task or not; does not
 * suspend. A task woken by it may still be on its way out of its call when weft_close returns,
 * but it no longer touches the descriptor; so does a task that readiness had woken just before
 * (its call returns -EBADF rather than try the number again, which may name another file by
 * then). A call that starts to wait on `fd` while weft_close is under way waits for it to end,
 * then for the file the number names by then: -EBADF if none.
 */
WEFT_API int weft_close(int fd);

/**
 * Accepts a connection on the listening socket `fd`, parking until one comes. The new
 * descriptor is O_NONBLOCK and O_CLOEXEC. `addr` and `addrlen` as for accept(2) (both may be
 * NULL). Returns the descriptor or a negative errno value (-EMFILE, -ENFILE when out of
 * descriptors: the call returns at once rather than wait, so a loop that retries at once spins:
 * back off, or shed load). Task-only; suspends.
 */
WEFT_API int weft_accept(int fd, struct sockaddr *addr, socklen_t *addrlen);

/**
 * Connects the non-blocking socket `fd` to `addr`, parking until the connection is made or has
 * failed. Returns 0 or a negative errno value (-ECONNREFUSED, -ETIMEDOUT, ... as SO_ERROR
 * reports it; -ENOTSOCK for a descriptor that is no socket, a regular file included; -ECANCELED,
 * and -ETIMEDOUT for a deadline, like any wait: the socket is then in an unspecified state,
 * close it). A UNIX-domain socket whose listener's queue is full waits for room, as a blocking
 * connect would; the kernel gives no readiness for that, so the call tries again after pauses
 * that grow from 50 us to 10 ms; a weft_close of `fd` meanwhile ends it with -EBADF (the next
 * socket to take the number is never connected by it). A descriptor another runtime registered
 * connects if that needs no wait (-EINVAL if it would). Task-only; suspends.
 */
WEFT_API int weft_connect(int fd, const struct sockaddr *addr, socklen_t addrlen);

/** read(2), parking while nothing is there: returns the bytes read (0 at end of file) or a
 *  negative errno value. Task-only; suspends. */
WEFT_API ssize_t weft_read(int fd, void *buf, size_t len);
/** write(2), parking while there is no room: returns the bytes written (perhaps fewer than
 *  `len`) or a negative errno value. Task-only; suspends. */
WEFT_API ssize_t weft_write(int fd, const void *buf, size_t len);
/** readv(2), parking while nothing is there: returns as weft_read. Task-only; suspends. */
WEFT_API ssize_t weft_readv(int fd, const struct iovec *iov, int iovcnt);
/** writev(2), parking while there is no room; may write fewer bytes than asked. Returns as
 *  weft_write. Task-only; suspends. */
WEFT_API ssize_t weft_writev(int fd, const struct iovec *iov, int iovcnt);
/** recv(2), parking while nothing is there: returns as weft_read. Task-only; suspends. */
WEFT_API ssize_t weft_recv(int fd, void *buf, size_t len, int flags);
/** send(2) with MSG_NOSIGNAL, parking while there is no room; may send fewer bytes. Returns as
 *  weft_write. Task-only; suspends. */
WEFT_API ssize_t weft_send(int fd, const void *buf, size_t len, int flags);
/** recvfrom(2), parking while nothing is there: returns as weft_read. Task-only; suspends. */
WEFT_API ssize_t weft_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
                               socklen_t *addrlen);
/** sendto(2) with MSG_NOSIGNAL, parking while there is no room. Returns as weft_write.
 *  Task-only; suspends. */
WEFT_API ssize_t weft_sendto(int fd, const void *buf, size_t len, int flags,
                             const struct sockaddr *addr, socklen_t addrlen);

/**
 * Writes all `len` bytes, parking as often as it takes. Returns `len`, or a negative errno
 * value; on an error (a cancel included) some bytes may have been written: how many is stored
 * in *done when `done` is not NULL (it is set on success too). Task-only; suspends.
 */
WEFT_API ssize_t weft_write_all(int fd, const void *buf, size_t len, size_t *done);
/** weft_write_all for send(2) with `flags` | MSG_NOSIGNAL; returns as weft_write_all.
 *  Task-only; suspends. */
WEFT_API ssize_t weft_send_all(int fd, const void *buf, size_t len, int flags, size_t *done);
/** weft_write_all for an array of buffers (`iov` is not modified), any number of them: more than
 *  writev(2) takes at once (IOV_MAX) go in turns. Returns as weft_write_all. Task-only;
 *  suspends. */
WEFT_API ssize_t weft_writev_all(int fd, const struct iovec *iov, int iovcnt, size_t *done);

/* ------------------------------------------------------------------------------------------ */
/* Looking inside a running runtime                                                            */
/* ------------------------------------------------------------------------------------------ */

/** Flags of weft_dump. */
enum {
    WEFT_DUMP_TEXT = 0, /**< an indented tree for a person */
    WEFT_DUMP_JSON = 1, /**< one JSON object for a program (see weft_dump) */
};

/**
 * Writes the tree of runtime `rt` (NULL: the runtime of the calling task) to the descriptor
 * `fd`: every live task in the scope it was spawned into, and under each task the scopes it
 * opened, with
 *   - for a scope: its name, policy (fail-fast, collect), shield, own and effective deadline and
 *     the time left, whether it is cancelled and why (weft_cancel_reason, and the code its tasks
 *     get), its max_concurrency with the children running and those waiting unstarted;
 *   - for a task: its id, name and state: running on worker N; parked, since when and on what
 *     (the join of which scope, a semaphore or mutex, an event, a channel or a select, a sleep
 *     and when it wakes, a descriptor to become readable or writable, a call on the blocking
 *     pool, the forked function of a weft_fork_join that another worker runs), with the time left
 * when the wait has a deadline; hosting (a child its join runs inline on its stack runs or waits
 * there); ready (queued to run again); unstarted. Objects the program owns (semaphores, events,
 * channels) are named by their addresses.
 *
 * WEFT_DUMP_JSON writes one object: {"weft_dump":1, "runtime", "pid", "now_ns" (weft_now()),
 * "workers": [{"index", "task": id or null}], "scopes": [{"index", "addr", "name", "parent",
 * "owner" (a task id), "root", "state", "policy", "shield", "deadline_ns",
 * "effective_deadline_ns", "left_ns", "cancelled", "cancel_code", "cancel_reason",
 * "max_concurrency", "running", "waiting"}], "tasks": [{"id", "name", "scope" (an index of
 * "scopes"), "state" ("running", "parked", "hosting", "ready", "unstarted"), "inline", "worker",
 * "hosting" (a task id), and for a parked task "on" ("join", "sleep", "sem", "event", "chan",
 * "select", "fd_read", "fd_write", "fd_any", "blocking", "fork"), "parked_ns" (how long),
 * "join_scope" (an index), "fd", or "object" (the address of the semaphore, event or channel;
 * of the function a blocking wait runs; of the fork's record in the caller's frame; null for a
 * sleep), "until_ns" and "left_ns"}]}. Times are
 * nanoseconds; absent deadlines are null. Names are escaped: UTF-8 characters are kept, and each
 * byte of anything else (a name cut inside a character, bytes that are not UTF-8) becomes
 * U+FFFD, so that the output is valid JSON whatever the names hold.
 *
 * Nothing is stopped: the dump reads the records of tasks and scopes while the workers go on,
 * so it is a picture taken over the time the dump takes to read them (tens of milliseconds for
 * 100,000 tasks; README.md, "When something is stuck"), in which a task that changes meanwhile
 * shows one of its states, or is left out if it ended or started right then. No worker waits for
 * it. What was read is written after, at the pace of `fd`; a dump holds up only the runtime's end
 * (weft_runtime_shutdown waits for a dump in progress).
 *
 * Returns the number of tasks written, or -EINVAL (unknown flags, or NULL `rt` outside a task),
 * -EBADF (`fd` is no open descriptor), -ENOMEM, -ESHUTDOWN (the runtime has ended, or is
 * ending past the point where its workers stop), or the negative errno of a failed write
 * (-EPIPE without a SIGPIPE: the signal is blocked on the calling thread meanwhile). A write
 * that would block waits for the descriptor (poll).
 * Any thread: a task (it does not suspend: its worker's thread blocks in the writes, so a task
 * should dump into a file or a pipe that is read), a foreign thread, a function on the blocking
 * pool. Not from a signal handler: it allocates and locks. For a dump on a signal, see
 * weft_config.dump_signal.
 */
WEFT_API int weft_dump(weft_runtime *rt, int fd, int flags);

/* ------------------------------------------------------------------------------------------ */
/* Blocking code and foreign threads                                                           */
/* ------------------------------------------------------------------------------------------ */

/**
 * Runs `fn(arg)` on a thread of the runtime's blocking pool and parks the calling task until it
 * returns; the worker runs other tasks meanwhile. Stores fn's return value in *result (may be
 * NULL). If the task is cancelled meanwhile, it still waits for `fn` to return (its arguments
 * may live on the task's stack) and then returns -ECANCELED / -ETIMEDOUT; `fn` can poll
 * weft_blocking_cancelled() to stop early. Returns 0, -EPERM outside a task, -EINVAL, -EAGAIN
 * when no pool thread could be started, or the cancel code (without calling fn if the task was
 * already cancelled). Task-only; suspends.
 */
WEFT_API int weft_blocking(weft_fn fn, void *arg, int *result);

/** From inside a function run by weft_blocking: returns 1 if its caller was cancelled, else 0
 *  (and 0 on any other thread). Does not suspend. */
WEFT_API int weft_blocking_cancelled(void);

/** A handle on work submitted to a long-lived runtime (opaque). */
typedef struct weft_handle weft_handle;

/**
 * Submits `fn(arg)` to the long-lived runtime `rt`, from any thread; does not wait for the task,
 * and never suspends. Meant for threads that are not `rt`'s tasks: a task of `rt` may submit
 * too (the new task belongs to the runtime, as every submission does, not to the caller's
 * scopes, whose joins do not wait for it), but not wait on the handle (weft_handle_wait:
 * -EDEADLK); a task spawns into a scope instead. Returns 0 and a handle to wait on;
 * -EINVAL; -ENOMEM, also when no stack could be mapped for the task (a submission that returns
 * 0 holds its stack: `fn` runs); -ESHUTDOWN once weft_runtime_shutdown(rt) has been called, also
 * while it runs and after it returned (see weft_runtime_shutdown).
 */
WEFT_API int weft_submit(weft_runtime *rt, weft_fn fn, void *arg, weft_handle **out);

/**
 * Blocks the calling OS thread until the submitted task ends or `deadline` (weft_now() clock;
 * WEFT_NEVER to wait for ever) passes. Returns 0 and stores the task's status in *status;
 * -ETIMEDOUT if the deadline passed first; -EDEADLK from inside a weft task (it would block a
 * worker: spawn into a scope instead); -EINVAL. Any thread that is not a weft task.
 */
WEFT_API int weft_handle_wait(weft_handle *h, weft_time deadline, int *status);

/** Cancels the submitted task. 0, -EINVAL. Any thread, task or not; does not suspend. */
WEFT_API int weft_handle_cancel(weft_handle *h);

/** Frees a handle; a task still running is left to finish on its own. 0, -EINVAL. Any thread,
 *  task or not; does not suspend. */
WEFT_API int weft_handle_release(weft_handle *h);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_H */
