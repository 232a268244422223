// SPDX-License-Identifier: MIT
/*
 * A known tree, dumped (weft_dump): tests/dump_check.py runs this program and checks what it
 * wrote; tests/gdb_check.py runs it under gdb and stops at dump_tree_built.
 *
 *   dump_tree json|text   builds the tree below on two workers and writes its dump to stdout
 *                         (and "fd N" on stderr: the descriptor fdwaiter waits on)
 *   dump_tree misuse      weft_dump refusing what it must refuse (exit status 0 if it does)
 *   dump_tree hang        a real hang: two tasks locking two mutexes in opposite orders, on a
 *                         runtime that dumps on SIGQUIT; the program sends itself SIGQUIT once
 *                         both wait, reads the dump back from stderr (a pipe it made) and
 *                         copies it to stdout, then cancels the pair and shuts down
 *
 * The tree (every wait reached before the dump, synchronised without a clock):
 *   root scope: main (the root task, running: it dumps)
 *     level1 (fail-fast, 1 h timeout), opened by main:
 *       sleeper (weft_sleep_for 1 h), semwaiter (a semaphore of no token), blocker (weft_blocking
 *       of a read nobody writes to until the end), joiner:
 *         level2 (collect, max_concurrency 2), opened by joiner (parked on its join):
 *           chanwaiter (an empty channel), inner, and one child waiting unstarted:
 *             level3, opened by inner (parked on its join):
 *               eventwaiter (an event nobody sets), fdwaiter (a pipe nobody writes to),
 *               selecter (a select of two empty channels)
 *       hoster (its join runs its one child inline, on its own stack):
 *         hosted, opened by hoster: middle (inline in hoster's join, whose join runs its own):
 *           nested, opened by middle: inlined (weft_sleep_for 1 h, inside middle's join)
 *       latecomer (spawned right before the dump: unstarted)
 *     doomer (parked on the join of doomed):
 *       doomed (cancelled; a name that is not all UTF-8, dump_check.py): spinner (running on the
 * other worker, ignoring the cancel, until main lets it go) The spinner holds one of the two
 * workers from the start, so everything else runs on the other, one task at a time: once main sees
 * every waiter counted in (each counts itself in just before it waits, with no suspension point in
 * between), they have all parked.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft.h"

#define HOUR_NS (3600 * WEFT_SEC)
#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "dump_tree: %s:%d: %s\n", __FILE__, __LINE__, #c);                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static weft_sem *sem;
static weft_event *ev;
static weft_chan *ch, *ch2;
static int fdpipe[2], blockpipe[2];
static atomic_int arrived, spin_started, spin_stop;
static int dump_flags;

/* gdb's test reads these: the ids of a task parked in a known function, and of a running one. */
volatile uint64_t dump_tree_sleeper_id, dump_tree_spinner_id;

/* Called once the tree is built, before the dump: gdb's test stops here. */
__attribute__((noinline)) void dump_tree_built(void);
__attribute__((noinline)) void dump_tree_built(void)
{
    __asm__ volatile("" ::: "memory");
}

static void wait_for(atomic_int *count, int n)
{
    while (atomic_load(count) < n)
        weft_yield();
}

static __attribute__((noinline)) int sleeper(void *arg)
{
    (void)arg;
    dump_tree_sleeper_id = weft_task_id();
    atomic_fetch_add(&arrived, 1);
    return weft_sleep_for(HOUR_NS) == -ECANCELED ? 0 : 1;
}

static int semwaiter(void *arg)
{
    (void)arg;
    atomic_fetch_add(&arrived, 1);
    return weft_sem_acquire(sem) == -ECANCELED ? 0 : 1;
}

static int block_read(void *arg)
{
    (void)arg;
    char b;
    return read(blockpipe[0], &b, 1) == 1 ? 0 : 1;
}

static int blocker(void *arg)
{
    (void)arg;
    int result = -1;
    atomic_fetch_add(&arrived, 1);
    int rc = weft_blocking(block_read, NULL, &result);
    return rc == -ECANCELED && result == 0 ? 0 : 1;
}

static int chanwaiter(void *arg)
{
    (void)arg;
    int item;
    atomic_fetch_add(&arrived, 1);
    return weft_chan_recv(ch, &item) == -ECANCELED ? 0 : 1;
}

static int eventwaiter(void *arg)
{
    (void)arg;
    atomic_fetch_add(&arrived, 1);
    return weft_event_wait(ev) == -ECANCELED ? 0 : 1;
}

static int selecter(void *arg)
{
    (void)arg;
    int a, b;
    weft_select_op ops[2] = {{.chan = ch, .kind = WEFT_SELECT_RECV, .item = &a},
                             {.chan = ch2, .kind = WEFT_SELECT_RECV, .item = &b}};
    atomic_fetch_add(&arrived, 1);
    return weft_select(ops, 2, 0) == -ECANCELED ? 0 : 1;
}

static int latecomer(void *arg)
{
    (void)arg;
    return weft_checkpoint() == -ECANCELED ? 0 : 1;
}

static int fdwaiter(void *arg)
{
    (void)arg;
    char b;
    atomic_fetch_add(&arrived, 1);
    return weft_read(fdpipe[0], &b, 1) == -ECANCELED ? 0 : 1;
}

static int queued(void *arg)
{
    (void)arg;
    return weft_checkpoint() == -ECANCELED ? 0 : 1;
}

static int spinner(void *arg)
{
    (void)arg;
    dump_tree_spinner_id = weft_task_id();
    atomic_store(&spin_started, 1);
    while (!atomic_load(&spin_stop))
        weft_checkpoint();
    return 0;
}

static int spawn_named(weft_scope *s, weft_fn fn, const char *name)
{
    return weft_spawn_ex(s, fn, NULL, &(weft_spawn_opts){.name = name});
}

static int inlined(void *arg)
{
    (void)arg;
    atomic_fetch_add(&arrived, 1);
    return weft_sleep_for(HOUR_NS) == -ECANCELED ? 0 : 1;
}

/* A join that takes its one child from this worker's spawn queue and runs it as a call: the
 * other worker is the spinner's, and steals nothing. */
static int join_one(const char *scope, weft_fn child, const char *name)
{
    weft_scope *s;
    CHECK(weft_scope_open(&s, &(weft_scope_opts){.name = scope}) == 0);
    CHECK(spawn_named(s, child, name) == 0);
    int rc = weft_scope_join(s);
    weft_scope_release(s);
    return rc == -ECANCELED ? 0 : 1;
}

static int middle(void *arg)
{
    (void)arg;
    return join_one("nested", inlined, "inlined");
}

static int hoster(void *arg)
{
    (void)arg;
    return join_one("hosted", middle, "middle");
}

static int inner(void *arg)
{
    (void)arg;
    weft_scope *l3;
    CHECK(weft_scope_open(&l3, &(weft_scope_opts){.name = "level3"}) == 0);
    int before = atomic_load(&arrived);
    CHECK(spawn_named(l3, eventwaiter, "eventwaiter") == 0);
    CHECK(spawn_named(l3, fdwaiter, "fdwaiter") == 0);
    CHECK(spawn_named(l3, selecter, "selecter") == 0);
    wait_for(&arrived, before + 3);
    atomic_fetch_add(&arrived, 1);
    int rc = weft_scope_join(l3);
    weft_scope_release(l3);
    return rc == -ECANCELED ? 0 : 1;
}

static int joiner(void *arg)
{
    (void)arg;
    weft_scope *l2;
    CHECK(weft_scope_open(&l2, &(weft_scope_opts){.name = "level2",
                                                  .policy = WEFT_COLLECT,
                                                  .max_concurrency = 2}) == 0);
    int before = atomic_load(&arrived);
    CHECK(spawn_named(l2, chanwaiter, "chanwaiter") == 0);
    CHECK(spawn_named(l2, inner, "inner") == 0);
    CHECK(weft_spawn(l2, queued, NULL) == 0); /* no slot left: waits unstarted */
    wait_for(&arrived, before + 5);           /* chanwaiter, inner and inner's three */
    atomic_fetch_add(&arrived, 1);
    int rc = weft_scope_join(l2);
    weft_scope_release(l2);
    return rc == -ECANCELED ? 0 : 1;
}

static int doomer(void *arg)
{
    (void)arg;
    weft_scope *doomed;
    /* A name that is no UTF-8 at one byte and is cut inside a Cyrillic letter at 31 bytes. */
    const char *name = "doomed\xff--\u043e\u0431\u0440\u0430\u0431\u043e\u0442\u043a\u0430-"
                       "\u0434\u043b\u0438\u043d\u043d\u043e\u0435";
    CHECK(weft_scope_open(&doomed, &(weft_scope_opts){.name = name}) == 0);
    CHECK(spawn_named(doomed, spinner, "spinner") == 0);
    wait_for(&spin_started, 1);
    CHECK(weft_scope_cancel(doomed) == 0);
    atomic_fetch_add(&arrived, 1);
    int rc = weft_scope_join(doomed);
    int errors = (int)weft_scope_error_count(doomed);
    weft_scope_release(doomed);
    return rc == -ECANCELED && errors == 0 ? 0 : 1;
}

static int tree_main(void *arg)
{
    (void)arg;
    weft_scope *l1;
    CHECK(spawn_named(weft_current_scope(), doomer, "doomer") == 0);
    wait_for(&spin_started, 1);

    CHECK(weft_scope_open(&l1, &(weft_scope_opts){.name = "level1",
                                                  .policy = WEFT_FAIL_FAST,
                                                  .timeout_ns = HOUR_NS}) == 0);
    CHECK(spawn_named(l1, sleeper, "sleeper") == 0);
    CHECK(spawn_named(l1, semwaiter, "semwaiter") == 0);
    CHECK(spawn_named(l1, blocker, "blocker") == 0);
    CHECK(spawn_named(l1, joiner, "joiner") == 0);
    CHECK(spawn_named(l1, hoster, "hoster") == 0);
    wait_for(&arrived, 11);
    /* Spawned last, with no suspension point before the dump: it cannot have started (the
     * other worker is the spinner's, and steals nothing). */
    CHECK(spawn_named(l1, latecomer, "latecomer") == 0);

    dump_tree_built();
    int n = weft_dump(NULL, STDOUT_FILENO, dump_flags);
    CHECK(n == 16); /* root, doomer, spinner, the nine waiters, hoster, middle, inlined,
                     * latecomer */

    atomic_store(&spin_stop, 1);
    CHECK(weft_scope_cancel(l1) == 0);
    CHECK(write(blockpipe[1], "x", 1) == 1);  /* after the cancel: the blocker sees it */
    CHECK(weft_scope_join(l1) == -ECANCELED); /* every child returned 0 */
    CHECK(weft_scope_error_count(l1) == 0);
    CHECK(weft_scope_release(l1) == 0);
    return 0;
}

static int tree(int flags)
{
    dump_flags = flags;
    CHECK(weft_sem_create(&sem, 0) == 0);
    CHECK(weft_event_create(&ev) == 0);
    CHECK(weft_chan_create(&ch, sizeof(int), 0) == 0 &&
          weft_chan_create(&ch2, sizeof(int), 0) == 0);
    CHECK(pipe2(fdpipe, O_NONBLOCK) == 0 && pipe(blockpipe) == 0);
    fprintf(stderr, "fd %d\n", fdpipe[0]);
    weft_config cfg = {.workers = 2, .watchdog_ns = -1};
    CHECK(weft_run(&cfg, tree_main, NULL) == 0);
    weft_sem_destroy(sem);
    weft_event_destroy(ev);
    weft_chan_destroy(ch);
    weft_chan_destroy(ch2);
    return 0;
}

/* ---- misuse ------------------------------------------------------------------------------- */

static int idle_task(void *arg)
{
    return weft_event_wait(arg) == -ECANCELED ? 0 : 1;
}

static int misuse(void)
{
    CHECK(weft_dump(NULL, STDOUT_FILENO, WEFT_DUMP_TEXT) == -EINVAL); /* no task: no runtime */
    weft_runtime *rt;
    weft_config bad = {.dump_signal = SIGKILL};
    CHECK(weft_runtime_start(&rt, &bad) == -EINVAL);
    bad.dump_signal = -1;
    CHECK(weft_runtime_start(&rt, &bad) == -EINVAL);
    bad.dump_signal = 100000;
    CHECK(weft_runtime_start(&rt, &bad) == -EINVAL);
    /* The C library's own (glibc: 32 and 33): sigaction refuses them, and no dump would come. */
    for (int s = 32; s < SIGRTMIN; s++) {
        bad.dump_signal = s;
        CHECK(weft_runtime_start(&rt, &bad) == -EINVAL);
    }
    /* A thread's own faults: a dump handler that returns would run the fault again for ever. */
    const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
        bad.dump_signal = faults[i];
        CHECK(weft_runtime_start(&rt, &bad) == -EINVAL);
        CHECK(weft_run(&bad, idle_task, NULL) == -EINVAL);
    }

    CHECK(weft_runtime_start(&rt, &(weft_config){.workers = 2}) == 0);
    weft_event *e;
    CHECK(weft_event_create(&e) == 0);
    weft_handle *h;
    CHECK(weft_submit(rt, idle_task, e, &h) == 0);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    CHECK(devnull >= 0);
    CHECK(weft_dump(rt, -1, WEFT_DUMP_TEXT) == -EBADF);
    CHECK(weft_dump(rt, 1000000, WEFT_DUMP_TEXT) == -EBADF);
    int closed = dup(devnull);
    close(closed);
    CHECK(weft_dump(rt, closed, WEFT_DUMP_JSON) == -EBADF);
    CHECK(weft_dump(rt, devnull, 2) == -EINVAL);
    CHECK(weft_dump(rt, devnull, -1) == -EINVAL);
    int rdonly = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(weft_dump(rt, rdonly, WEFT_DUMP_TEXT) == -EBADF); /* the write says so */
    close(rdonly);
    int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (full >= 0) {
        CHECK(weft_dump(rt, full, WEFT_DUMP_TEXT) == -ENOSPC);
        close(full);
    }
    /* A pipe nobody reads: -EPIPE, and the process lives on (no SIGPIPE). */
    int p[2];
    CHECK(pipe(p) == 0);
    close(p[0]);
    CHECK(weft_dump(rt, p[1], WEFT_DUMP_JSON) == -EPIPE);
    close(p[1]);
    CHECK(weft_dump(rt, devnull, WEFT_DUMP_TEXT) >= 1); /* the submitted task at least */
    CHECK(weft_dump(rt, devnull, WEFT_DUMP_JSON) >= 1);
    CHECK(weft_runtime_shutdown(rt) == 0);
    int status;
    CHECK(weft_handle_wait(h, WEFT_NEVER, &status) == 0 && status == 0);
    weft_handle_release(h);
    CHECK(weft_dump(rt, devnull, WEFT_DUMP_TEXT) == -ESHUTDOWN);
    CHECK(weft_dump(rt, devnull, WEFT_DUMP_JSON) == -ESHUTDOWN);
    weft_event_destroy(e);
    close(devnull);
    printf("misuse: every refusal as documented\n");
    return 0;
}

/* ---- a real hang -------------------------------------------------------------------------- */

static weft_mutex *ma, *mb;
static atomic_int locked_first;

static int lock_pair(weft_mutex *first, weft_mutex *second)
{
    if (weft_mutex_lock(first) != 0)
        return 1;
    atomic_fetch_add(&locked_first, 1);
    while (atomic_load(&locked_first) < 2) /* both hold their first: the deadlock is certain */
        weft_yield();
    atomic_fetch_add(&arrived, 1);
    int rc = weft_mutex_lock(second); /* waits for ever, until cancelled */
    weft_mutex_unlock(first);
    return rc == -ECANCELED ? 0 : 1;
}

static int transfer_a_to_b(void *arg)
{
    (void)arg;
    return lock_pair(ma, mb);
}

static int transfer_b_to_a(void *arg)
{
    (void)arg;
    return lock_pair(mb, ma);
}

static int hang_root(void *arg)
{
    (void)arg;
    weft_scope *s;
    CHECK(weft_scope_open(&s, &(weft_scope_opts){.name = "transfers"}) == 0);
    CHECK(spawn_named(s, transfer_a_to_b, "transfer a->b") == 0);
    CHECK(spawn_named(s, transfer_b_to_a, "transfer b->a") == 0);
    int rc = weft_scope_join(s);
    weft_scope_release(s);
    return rc;
}

static int hang(void)
{
    CHECK(weft_mutex_create(&ma) == 0 && weft_mutex_create(&mb) == 0);
    /* The dump goes to stderr: a pipe here, read back below. */
    int errpipe[2];
    CHECK(pipe(errpipe) == 0);
    int saved_err = dup(STDERR_FILENO);
    CHECK(dup2(errpipe[1], STDERR_FILENO) == STDERR_FILENO);
    close(errpipe[1]);
    weft_runtime *rt;
    CHECK(weft_runtime_start(&rt, &(weft_config){.workers = 2, .dump_signal = SIGQUIT}) == 0);
    weft_handle *h;
    CHECK(weft_submit(rt, hang_root, NULL, &h) == 0);
    while (atomic_load(&arrived) < 2) /* both are about to wait for their second mutex */
        sched_yield();
    /* They park at once after counting in, but on other threads: the dump is asked for until
     * it shows both parked (each ask is answered by a whole dump, read back here). */
    char buf[65536];
    size_t len = 0;
    for (int tries = 0; tries < 1000; tries++) {
        CHECK(kill(getpid(), SIGQUIT) == 0);
        len = 0;
        for (;;) {
            ssize_t k = read(errpipe[0], buf + len, sizeof(buf) - 1 - len);
            CHECK(k > 0);
            len += (size_t)k;
            buf[len] = 0;
            /* A dump ends with the last task's line; both transfers come after the root. */
            if (strstr(buf, "b->a") && buf[len - 1] == '\n')
                break;
        }
        char *a = strstr(buf, "\"transfer a->b\" parked");
        char *b = strstr(buf, "\"transfer b->a\" parked");
        if (a && b)
            break;
        sched_yield();
    }
    dup2(saved_err, STDERR_FILENO);
    close(saved_err);
    CHECK(strstr(buf, "\"transfer a->b\" parked for") &&
          strstr(buf, "\"transfer b->a\" parked for"));
    CHECK(strstr(buf, ": semaphore 0x"));
    fwrite(buf, 1, len, stdout);
    CHECK(weft_handle_cancel(h) == 0);
    int status;
    CHECK(weft_handle_wait(h, WEFT_NEVER, &status) == 0 && status == -ECANCELED);
    weft_handle_release(h);
    CHECK(weft_runtime_shutdown(rt) == 0);
    /* The signal is the default one again: blocked here, it stays pending, handled by nobody. */
    struct sigaction now;
    CHECK(sigaction(SIGQUIT, NULL, &now) == 0 && now.sa_handler == SIG_DFL);
    close(errpipe[0]);
    weft_mutex_destroy(ma);
    weft_mutex_destroy(mb);
    return 0;
}

int main(int argc, char **argv)
{
    alarm(120); /* a hang ends the program */
    const char *mode = argc > 1 ? argv[1] : "text";
    if (!strcmp(mode, "json"))
        return tree(WEFT_DUMP_JSON);
    if (!strcmp(mode, "text"))
        return tree(WEFT_DUMP_TEXT);
    if (!strcmp(mode, "misuse"))
        return misuse();
    if (!strcmp(mode, "hang"))
        return hang();
    fprintf(stderr, "usage: dump_tree json|text|misuse|hang\n");
    return 2;
}
