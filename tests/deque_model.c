// SPDX-License-Identifier: MIT
/*
 * Model check of the Chase-Lev deque (lib/deque.h, lib/deque.c): every interleaving of small
 * scenarios, run on the real source.
 *
 * How. The deque's source is compiled into this program with the <stdatomic.h> operations it
 * uses (atomic_load_explicit, atomic_store_explicit, atomic_compare_exchange_strong_explicit,
 * atomic_thread_fence, atomic_init) redefined as hooks: each one first yields to a scheduler,
 * saying which location it is about to touch and how, then performs the real operation. The
 * owner and one or two thieves run as cooperative green threads of one OS thread (on the
 * library's context switch, lib/arch/ctx.h, which test_switch.c checks; glibc's swapcontext
 * would cost two system calls a switch), so the scheduler decides the order of every atomic
 * access and sees nothing else of the code. The functions of deque.c are renamed
 * (model__deque_*) so that they do not clash with the library's copies. Under ASan and TSan
 * every switch is announced (__sanitizer_start_switch_fiber, __tsan_switch_to_fiber), so the
 * program runs in every build.
 *
 * Which interleavings. A depth-first search over the scheduling choices, stateless (each
 * interleaving is re-run from the start, the choices before the branch point replayed) and
 * reduced by dynamic partial-order reduction with sleep sets (Flanagan and Godefroid, POPL
 * 2005). Two accesses are dependent when they touch the same location and one of them writes; a
 * compare-exchange is taken to write until it has run, and counts as a load once it has failed.
 * Interleavings that differ only in the order of independent accesses are equivalent (the same
 * Mazurkiewicz trace: same values read, same final state), and the search runs at least one of
 * every trace, so it reaches every outcome of every sequentially consistent interleaving. To
 * keep the reduction honest, the smallest scenarios (one with two thieves) are also run with no
 * reduction at all, every interleaving, and both runs must cover the same set of traces. An
 * interleaving is bounded at MAX_STEPS accesses (no scenario loops, so the bound is never
 * reached; reaching it is reported as a failure).
 *
 * Limitation: only sequentially consistent interleavings are explored. The weak-memory
 * reorderings that the C11 orders of deque.h allow (and forbid) are not: a missing fence or a
 * too-weak order would go unnoticed here. stress/deque_stress.c covers those empirically, on
 * real threads under ThreadSanitizer. So for a deque with private items (deque.h) the model
 * checks the bookkeeping: a steal that finds only private items asks and takes nothing, the
 * owner's next push or pop publishes, a rescue steal takes the oldest item, and no item is lost
 * or taken twice on the way; the rescue's barrier is a fence here. Whether the owner's unfenced
 * pops may race rescues at all is a question of weak memory, for deque_stress, whose rescues
 * run membarrier(2) on real threads.
 *
 * Checks, on every interleaving: a pop or steal returns only an item that was pushed (nothing
 * invented), every item is taken exactly once (by a pop, a steal, or the final drain: nothing
 * lost, nothing duplicated), the owner's pop returns the newest item not yet taken and each
 * thief's steals come in push order, a pop that says "empty" leaves no item behind that was
 * pushed before it, and the deque is empty after the drain. A self-check run breaks the
 * compare-exchange on purpose and must find a violation, so a harness that checks nothing
 * cannot pass.
 *
 * Usage: deque_model [--quick | --full]   (--quick: the smallest scenarios only; --full: also
 * the two largest, about 450,000 interleavings more)
 * Prints one line per scenario with the number of interleavings explored; exits 0 if every
 * check held, 1 otherwise.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arch/ctx.h" /* the library's context switch, as test_switch.c checks it */

#if defined(__SANITIZE_ADDRESS__)
#define MODEL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MODEL_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define MODEL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MODEL_TSAN 1
#endif
#endif
#ifdef MODEL_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef MODEL_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* ---- the hooks --------------------------------------------------------------------------------
 */

enum { OP_LOAD, OP_STORE, OP_RMW, OP_FENCE };

static void model_yield(const volatile void *addr, int kind);
static int model_break_cas; /* the self-check: a compare-exchange that ignores `expected` */
static int cas_ok;          /* what the last compare-exchange did */

static int model_cas_done(int ok)
{
    cas_ok = ok;
    return ok;
}

#undef atomic_init
#undef atomic_load_explicit
#undef atomic_store_explicit
#undef atomic_compare_exchange_strong_explicit
#undef atomic_thread_fence

/* The real operations. Every green thread runs on this one OS thread, so a fence only has to keep
 * the compiler from moving accesses across it: a signal fence (a thread fence would also trip
 * GCC's -Wtsan). */
#if defined(__clang__)
#define model_load_(p, o) __c11_atomic_load((p), (o))
#define model_store_(p, v, o) __c11_atomic_store((p), (v), (o))
#define model_cas_(p, e, d, s, f) __c11_atomic_compare_exchange_strong((p), (e), (d), (s), (f))
#define model_fence_(o) __c11_atomic_signal_fence(o)
#else
#define model_load_(p, o)                                                                          \
    __extension__({                                                                                \
        __auto_type model_p_ = (p);                                                                \
        __typeof__((void)0, *model_p_) model_v_;                                                   \
        __atomic_load(model_p_, &model_v_, (o));                                                   \
        model_v_;                                                                                  \
    })
#define model_store_(p, v, o)                                                                      \
    __extension__({                                                                                \
        __auto_type model_p_ = (p);                                                                \
        __typeof__((void)0, *model_p_) model_v_ = (v);                                             \
        __atomic_store(model_p_, &model_v_, (o));                                                  \
    })
#define model_cas_(p, e, d, s, f)                                                                  \
    __extension__({                                                                                \
        __auto_type model_p_ = (p);                                                                \
        __typeof__((void)0, *model_p_) model_d_ = (d);                                             \
        __atomic_compare_exchange(model_p_, (e), &model_d_, 0, (s), (f));                          \
    })
#define model_fence_(o) __atomic_signal_fence(o)
#endif

/* The hooks. Outside the green threads (init, the final drain) model_yield does nothing. */
#define atomic_init(p, v) model_store_((p), (v), memory_order_relaxed)
#define atomic_load_explicit(p, o) (model_yield((p), OP_LOAD), model_load_((p), (o)))
#define atomic_store_explicit(p, v, o) (model_yield((p), OP_STORE), model_store_((p), (v), (o)))
#define atomic_thread_fence(o) (model_yield(NULL, OP_FENCE), model_fence_(o))
#define atomic_compare_exchange_strong_explicit(p, e, d, s, f)                                     \
    (model_yield((p), OP_RMW), model_break_cas                                                     \
                                   ? (model_store_((p), (d), (s)), 1)                              \
                                   : model_cas_done(model_cas_((p), (e), (d), (s), (f))))

#define weft__deque_init model__deque_init
#define weft__deque_destroy model__deque_destroy
#define weft__deque_grow model__deque_grow
#define weft__deque_steal_any model__deque_steal_any
#define weft__deque_steal_rescue model__deque_steal_rescue
#define weft__deque_set_private model__deque_set_private
/* Under sequential consistency the rescue's process-wide barrier is one more fence. */
#define WEFT__DEQUE_HEAVY_BARRIER() (model_yield(NULL, OP_FENCE), 0)
#include "deque.c" /* and deque.h, through it */

/* ---- green threads ------------------------------------------------------------------------------
 */

#define MAX_THREADS 3
#define MAX_STEPS 256
#define STACK_SIZE (256 * 1024)

typedef struct op {
    const volatile void *addr;
    int kind;
} op;

typedef struct gthread {
    weft__ctx ctx;
    char *stack;
    int finished;
    op pending; /* the access it will make when next scheduled */
#ifdef MODEL_ASAN
    void *fake_stack;
#endif
#ifdef MODEL_TSAN
    void *fiber;
#endif
} gthread;

static gthread threads[MAX_THREADS];
static int nthreads;
static int current = -1; /* the green thread running, -1 for the scheduler */
static weft__ctx sched_ctx;
static void (*thread_body)(int id);
#ifdef MODEL_ASAN
static void *sched_fake_stack;
static const void *sched_stack_bottom;
static size_t sched_stack_size;
#endif
#ifdef MODEL_TSAN
static void *sched_fiber;
#endif

/* MODEL_NO_FRAME, for to_scheduler and trampoline: no TSan function entry or exit, so that a
 * green thread that ends leaves no frame on its fiber's shadow stack and the fiber can be reused
 * without that stack growing (GCC's no_sanitize("thread") drops them, Clang's does not).
 * MODEL_NO_TSAN, for the search's own bookkeeping: it runs on the scheduler alone, and is the
 * bulk of the work. */
#if defined(__clang__) && defined(__has_attribute)
#if __has_attribute(disable_sanitizer_instrumentation)
#define MODEL_NO_FRAME __attribute__((disable_sanitizer_instrumentation, noinline))
#endif
#endif
#if defined(__GNUC__)
#define MODEL_NO_TSAN __attribute__((no_sanitize("thread"), noinline))
#else
#define MODEL_NO_TSAN
#endif
#ifndef MODEL_NO_FRAME
#define MODEL_NO_FRAME MODEL_NO_TSAN
#endif

/* Green thread -> scheduler. `dying`: the thread will never run again. */
MODEL_NO_FRAME static void to_scheduler(int dying)
{
    gthread *t = &threads[current];
#ifdef MODEL_ASAN
    __sanitizer_start_switch_fiber(dying ? NULL : &t->fake_stack, sched_stack_bottom,
                                   sched_stack_size);
#endif
#ifdef MODEL_TSAN
    __tsan_switch_to_fiber(sched_fiber, 0);
#endif
    (void)dying;
    weft__ctx_switch(&t->ctx, &sched_ctx);
#ifdef MODEL_ASAN
    __sanitizer_finish_switch_fiber(t->fake_stack, &sched_stack_bottom, &sched_stack_size);
#endif
}

/* Scheduler -> green thread `id`, until it yields or ends. */
static void to_thread(int id)
{
    gthread *t = &threads[id];
    current = id;
#ifdef MODEL_ASAN
    __sanitizer_start_switch_fiber(&sched_fake_stack, t->stack, STACK_SIZE);
#endif
#ifdef MODEL_TSAN
    __tsan_switch_to_fiber(t->fiber, 0);
#endif
    weft__ctx_switch(&sched_ctx, &t->ctx);
#ifdef MODEL_ASAN
    __sanitizer_finish_switch_fiber(sched_fake_stack, NULL, NULL);
#endif
    current = -1;
}

static void model_yield(const volatile void *addr, int kind)
{
    if (current < 0)
        return;
    threads[current].pending = (op){addr, kind};
    to_scheduler(0);
}

MODEL_NO_FRAME static void trampoline(void *arg)
{
    int id = (int)(intptr_t)arg;
#ifdef MODEL_ASAN
    __sanitizer_finish_switch_fiber(NULL, &sched_stack_bottom, &sched_stack_size);
#endif
    thread_body(id);
    threads[id].finished = 1;
    to_scheduler(1);
    abort(); /* never resumed */
}

static void start_threads(int n, void (*body)(int id))
{
    nthreads = n;
    thread_body = body;
    for (int i = 0; i < n; i++) {
        gthread *t = &threads[i];
        if (!t->stack && !(t->stack = malloc(STACK_SIZE))) {
            fprintf(stderr, "deque_model: out of memory\n");
            exit(1);
        }
        weft__ctx_make(&t->ctx, t->stack, STACK_SIZE, trampoline, (void *)(intptr_t)i);
        t->finished = 0;
#ifdef MODEL_TSAN
        /* A TSan fiber costs milliseconds to create, and every one ever created widens TSan's
         * vector clocks: one per green thread, reused by every interleaving. */
        if (!t->fiber)
            t->fiber = __tsan_create_fiber(0);
#endif
        to_thread(i); /* runs to its first access (thread-local work only) */
    }
}

/* ---- scenarios
 * ------------------------------------------------------------------------------------ */

#define MAX_ITEMS 16
#define MAX_OPS 12
#define R_NULL (-1)    /* pop/peek: NULL; steal: WEFT__DEQUE_EMPTY */
#define R_ABORT (-2)   /* steal: WEFT__DEQUE_ABORT */
#define R_BAD (-3)     /* something that is not an item */
#define R_DONE (-4)    /* a push that returned 0 */
#define R_PRIVATE (-5) /* steal: WEFT__DEQUE_PRIVATE */

typedef struct scenario {
    const char *name;
    int capacity_log2;
    int prefill;                   /* items pushed before the threads start */
    const char *prog[MAX_THREADS]; /* thread 0 is the owner: p push, o pop, s steal_owner, k peek;
                                    * thieves: s steal_any, r steal_rescue */
    int level;                     /* 0: every run; 1: not with --quick; 2: only with --full */
    int crosscheck;                /* also run every interleaving, unreduced */
    int priv;                      /* the deque keeps its items private until asked */
} scenario;

static const scenario *sc;
static weft__deque dq;
static int item_store[MAX_ITEMS];
static int npushed;                      /* items pushed so far (prefill included) */
static int result[MAX_THREADS][MAX_OPS]; /* what each operation returned */
static int pushes_before[MAX_OPS];       /* owner: items pushed before operation i */
static int drained[MAX_ITEMS];
static int ndrained;
static char failure[512];

static int item_index(void *x)
{
    if (x == NULL)
        return R_NULL;
    if (x == WEFT__DEQUE_ABORT)
        return R_ABORT;
    if (x == WEFT__DEQUE_PRIVATE)
        return R_PRIVATE;
    int *p = x;
    if (p < item_store || p >= item_store + MAX_ITEMS)
        return R_BAD;
    return (int)(p - item_store);
}

static void body(int id)
{
    const char *prog = sc->prog[id];
    for (int i = 0; prog[i]; i++) {
        int r = R_BAD;
        if (id == 0)
            pushes_before[i] = npushed;
        switch (prog[i]) {
        case 'p': {
            int k = npushed++;
            r = weft__deque_push_owner(&dq, &item_store[k]) == 0 ? R_DONE : R_BAD;
            break;
        }
        case 'o':
            r = item_index(weft__deque_pop_owner(&dq));
            break;
        case 'k':
            r = item_index(weft__deque_peek_owner(&dq));
            break;
        case 'z': {
            int64_t n = weft__deque_size_estimate(&dq);
            r = n >= 0 && n <= npushed ? R_DONE : R_BAD; /* racy, but never out of bounds */
            break;
        }
        case 's':
            r = item_index(id == 0 ? weft__deque_steal_owner(&dq) : model__deque_steal_any(&dq));
            break;
        case 'r':
            r = item_index(model__deque_steal_rescue(&dq));
            break;
        }
        result[id][i] = r;
    }
}

static const scenario scenarios[] = {
    /* name, capacity_log2, prefill, {owner, thief, thief}, level, crosscheck, priv */
    {"last item: pop vs steal", 1, 1, {"o", "s"}, 0, 1, 0},
    {"last item: 2 thieves, owner reads the size", 1, 1, {"z", "s", "s"}, 0, 1, 0},
    {"owner steal vs thief steal", 1, 2, {"so", "s"}, 0, 1, 0},
    {"growth vs steal", 1, 2, {"p", "s"}, 0, 1, 0},
    {"peek, push, pop vs steal", 1, 1, {"kpo", "s"}, 0, 1, 0},
    {"push push pop pop vs 2 steals", 1, 0, {"ppoo", "ss"}, 0, 0, 0},
    {"3 pushes (growth), 3 pops vs 2 steals", 1, 0, {"pppooo", "ss"}, 0, 0, 0},
    {"growth after wrap-around vs 2 steals", 1, 0, {"ppoppo", "ss"}, 1, 0, 0},
    {"3 pushes (growth), pop vs 2 thieves", 1, 0, {"pppo", "s", "s"}, 1, 0, 0},
    {"push (growth), owner steal, pop vs 2 thieves", 1, 2, {"pso", "s", "s"}, 1, 0, 0},
    {"pushes, pop vs a thief stealing twice and one", 1, 0, {"ppo", "ss", "s"}, 1, 0, 0},
    {"push (growth), pop vs 2 thieves stealing twice", 1, 2, {"po", "ss", "ss"}, 1, 0, 0},
    {"5 pushes (2 growths), 5 pops vs 3 steals", 1, 0, {"pppppooooo", "sss"}, 1, 0, 0},
    {"pushes and pops vs 2 thieves stealing twice", 1, 0, {"ppopo", "ss", "ss"}, 2, 0, 0},
    {"growth, pops vs 2 thieves stealing twice", 1, 0, {"pppopo", "ss", "ss"}, 2, 0, 0},
    /* Private items: a steal asks for them and the owner's next push or pop publishes them; a
     * rescue takes one regardless; the owner pops unfenced above the published part. */
    {"private: last item, pop vs rescue", 1, 1, {"o", "r"}, 0, 1, 1},
    {"private: pop vs steal (asks), rescue", 1, 1, {"o", "sr"}, 0, 1, 1},
    {"private: push, pop vs steal twice", 1, 1, {"po", "ss"}, 0, 0, 1},
    {"private: asked, published, popped vs 2 thieves", 1, 2, {"opo", "ss", "r"}, 0, 0, 1},
    {"private: pushes, pops vs steal, rescue, steal", 1, 0, {"ppoo", "srs"}, 0, 0, 1},
    {"private: growth, pops vs steals and a rescue", 1, 0, {"pppooo", "ss", "r"}, 1, 0, 1},
    {"private: pushes and pops vs 2 thieves asking", 1, 0, {"ppopo", "ss", "sr"}, 1, 0, 1},
    {"private: growth, pops vs rescues and steals", 1, 0, {"pppopo", "rs", "sr"}, 2, 0, 1},
    /* An answer publishes the older half: a thief that took it asks again, and the owner pops
     * fenced below the published part and unfenced above it. */
    {"private: half published, pops vs 3 steals", 3, 6, {"pooo", "sss"}, 1, 0, 1},
    {"private: pops down into the published part", 3, 5, {"poooo", "sss"}, 1, 0, 1},
    {"private: pops into the published part vs a rescue", 3, 5, {"ooo", "sr", "s"}, 1, 0, 1},
    {"private: pops into the published part vs 3 steals", 3, 6, {"ooo", "ss", "s"}, 1, 0, 1},
    {"private: pop, push, pops vs steals and a rescue", 3, 7, {"opooo", "ssr"}, 1, 0, 1},
    {"private: growth, then pops into the published part", 1, 5, {"ppooo", "ssr"}, 1, 0, 1},
};
#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

static void setup(void)
{
    if (model__deque_init(&dq, sc->capacity_log2) != 0) {
        fprintf(stderr, "deque_model: out of memory\n");
        exit(1);
    }
    if (sc->priv)
        model__deque_set_private(&dq);
    npushed = 0;
    ndrained = 0;
    for (int t = 0; t < MAX_THREADS; t++)
        for (int i = 0; i < MAX_OPS; i++)
            result[t][i] = R_BAD;
    for (int i = 0; i < sc->prefill; i++) {
        weft__deque_push_owner(&dq, &item_store[npushed]);
        npushed++;
    }
}

static int threads_of(const scenario *s)
{
    int n = 0;
    while (n < MAX_THREADS && s->prog[n])
        n++;
    return n;
}

static const char *res_str(int r, char *buf)
{
    switch (r) {
    case R_NULL:
        return "empty";
    case R_ABORT:
        return "abort";
    case R_PRIVATE:
        return "private";
    case R_BAD:
        return "not an item";
    case R_DONE:
        return "ok";
    }
    sprintf(buf, "item %d", r);
    return buf;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(failure, sizeof(failure), __VA_ARGS__);                                           \
        return 1;                                                                                  \
    } while (0)

/* Checks one finished interleaving; drains the deque (no thread runs: no yields). */
static int check(void)
{
    void *x;
    while ((x = weft__deque_pop_owner(&dq))) {
        int k = item_index(x);
        if (k < 0 || k >= npushed || ndrained == MAX_ITEMS)
            FAIL("the final drain popped %p, not an item pushed", x);
        drained[ndrained++] = k;
    }
    if (weft__deque_size_estimate(&dq) != 0)
        FAIL("size %lld after the drain", (long long)weft__deque_size_estimate(&dq));
    if (model__deque_steal_any(&dq) != WEFT__DEQUE_EMPTY)
        FAIL("a steal after the drain found something");

    int n = threads_of(sc);
    int count[MAX_ITEMS] = {0};
    char b[32];
    for (int id = 0; id < n; id++) {
        int last = -1;
        for (int i = 0; sc->prog[id][i]; i++) {
            char c = sc->prog[id][i];
            int r = result[id][i];
            if (c == 'p' || c == 'z') {
                if (r != R_DONE)
                    FAIL("owner's %s %d failed", c == 'p' ? "push" : "size estimate", i);
                continue;
            }
            int steal = c == 's' || c == 'r';
            if (r == R_BAD || r >= npushed || (!steal && r == R_ABORT) ||
                (r == R_PRIVATE && (c != 's' || id == 0 || !sc->priv)))
                FAIL("thread %d, operation %d ('%c') returned %s", id, i, c, res_str(r, b));
            if (c == 'k' || r < 0)
                continue; /* a peek takes nothing */
            count[r]++;
            /* Each taker at the top (a thief, or the owner's steals) gets items in push order. */
            if (steal) {
                if (r <= last)
                    FAIL("thread %d stole item %d after item %d", id, r, last);
                last = r;
            }
        }
    }
    for (int i = 0; i < ndrained; i++)
        count[drained[i]]++;
    for (int k = 0; k < npushed; k++)
        if (count[k] != 1)
            FAIL("item %d was taken %d times", k, count[k]);

    /* The owner's pops: the newest item left, or "empty" only if nothing pushed before is left. */
    const char *own = sc->prog[0];
    for (int i = 0; own[i]; i++) {
        if (own[i] != 'o')
            continue;
        int r = result[0][i];
        int newer_than = r == R_NULL ? -1 : r; /* items above this one must be gone */
        for (int j = newer_than + 1; j < pushes_before[i]; j++) {
            for (int d = 0; d < ndrained; d++)
                if (drained[d] == j)
                    FAIL("owner's pop %d returned %s while item %d was still there (drained "
                         "at the end)",
                         i, res_str(r, b), j);
            for (int l = i + 1; own[l]; l++)
                if ((own[l] == 'o' || own[l] == 's') && result[0][l] == j)
                    FAIL("owner's pop %d returned %s while item %d was still there (taken by "
                         "owner operation %d)",
                         i, res_str(r, b), j, l);
        }
    }
    return 0;
}

/* ---- outcome sets ------------------------------------------------------------------------------
 */

#define OUTCOME_SLOTS (1 << 18)

typedef struct outcomes {
    uint64_t slot[OUTCOME_SLOTS];
    int n;
} outcomes;

MODEL_NO_TSAN static uint64_t outcome_hash(void)
{
    uint64_t h = 1469598103934665603ull;
#define MIX(v) (h = (h ^ (uint64_t)(uint32_t)(v)) * 1099511628211ull)
    for (int id = 0; id < threads_of(sc); id++) {
        for (int i = 0; sc->prog[id][i]; i++)
            MIX(result[id][i]);
        MIX(1000 + id);
    }
    int sorted[MAX_ITEMS];
    memcpy(sorted, drained, sizeof(int) * (size_t)ndrained);
    for (int i = 1; i < ndrained; i++)
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            int tmp = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = tmp;
        }
    for (int i = 0; i < ndrained; i++)
        MIX(sorted[i]);
#undef MIX
    return h | 1; /* 0 marks an empty slot */
}

MODEL_NO_TSAN static void outcome_add(outcomes *o, uint64_t h)
{
    for (size_t i = h % OUTCOME_SLOTS;; i = (i + 1) % OUTCOME_SLOTS) {
        if (o->slot[i] == h)
            return;
        if (o->slot[i] == 0) {
            if (o->n == OUTCOME_SLOTS - 1) {
                fprintf(stderr, "deque_model: too many distinct outcomes\n");
                exit(1);
            }
            o->slot[i] = h;
            o->n++;
            return;
        }
    }
}

static int outcome_has(const outcomes *o, uint64_t h)
{
    for (size_t i = h % OUTCOME_SLOTS;; i = (i + 1) % OUTCOME_SLOTS) {
        if (o->slot[i] == h)
            return 1;
        if (o->slot[i] == 0)
            return 0;
    }
}

/* ---- the search -------------------------------------------------------------------------------
 */

typedef struct state {
    unsigned enabled, backtrack, done, sleep;
    int chosen;
    op pending[MAX_THREADS]; /* each thread's next access in this state */
} state;

typedef struct step {
    int t;
    op o;
    uint16_t vc[MAX_THREADS]; /* vector clock: the last access of each thread ordered before */
} step;

static state S[MAX_STEPS + 1];
static step steps[MAX_STEPS];

/* The Mazurkiewicz trace of an interleaving, as reads-from and write order: each access is
 * named by its thread and its rank in that thread; a load is described by the store it read
 * (or the initial value), a store or a successful compare-exchange by its rank among the stores
 * to its location. Two interleavings are equivalent (the same trace) exactly when these agree. */
#define MAX_LOCS 64

static struct loc {
    const volatile void *addr;
    int writes;
    int last_writer; /* (thread + 1) * MAX_STEPS + rank, 0 for the initial value */
} locs[MAX_LOCS];
static int nlocs;
static int rank_of[MAX_THREADS];
static int event_code[MAX_THREADS][MAX_STEPS];

static void trace_reset(void)
{
    nlocs = 0;
    memset(rank_of, 0, sizeof(rank_of));
}

MODEL_NO_TSAN static void trace_event(int t, op o)
{
    int k = rank_of[t]++;
    if (o.kind == OP_FENCE) {
        event_code[t][k] = -1;
        return;
    }
    struct loc *l = NULL;
    for (int i = 0; i < nlocs && !l; i++)
        if (locs[i].addr == o.addr)
            l = &locs[i];
    if (!l) {
        if (nlocs == MAX_LOCS) {
            fprintf(stderr, "deque_model: more than %d locations\n", MAX_LOCS);
            exit(1);
        }
        l = &locs[nlocs++];
        *l = (struct loc){o.addr, 0, 0};
    }
    if (o.kind == OP_LOAD) {
        event_code[t][k] = l->last_writer;
    } else {
        event_code[t][k] = -2 - l->writes++;
        l->last_writer = (t + 1) * MAX_STEPS + k;
    }
}

MODEL_NO_TSAN static uint64_t trace_hash(int nt)
{
    uint64_t h = 1469598103934665603ull;
    for (int t = 0; t < nt; t++) {
        for (int k = 0; k < rank_of[t]; k++)
            h = (h ^ (uint64_t)(uint32_t)event_code[t][k]) * 1099511628211ull;
        h = (h ^ 0xabcdefu) * 1099511628211ull;
    }
    return h | 1;
}
static uint64_t last_trace;

#define dependent(a, b)                                                                            \
    ((a).kind != OP_FENCE && (b).kind != OP_FENCE && (a).addr == (b).addr &&                       \
     ((a).kind != OP_LOAD || (b).kind != OP_LOAD))

/* Runs one interleaving: the choices of S[0..prefix-1] again, then new states (whose choices,
 * backtrack and sleep sets are set here). An interleaving whose every enabled thread sleeps
 * (its continuations were all covered by an equivalent one) is *redundant*: it is run to the
 * end without branching and checked, but adds no branch points. Returns 1 if a check failed;
 * *depth: accesses made. */
MODEL_NO_TSAN static int run_one(int prefix, int reduce, int *depth, int *redundant)
{
    setup();
    trace_reset();
    int nt = threads_of(sc);
    start_threads(nt, body);
    uint16_t tc[MAX_THREADS][MAX_THREADS];
    memset(tc, 0, sizeof(tc));
    int n = 0, prev = 0;
    unsigned carried_sleep = 0;
    *redundant = 0;
    for (;;) {
        unsigned enabled = 0;
        for (int t = 0; t < nt; t++)
            if (!threads[t].finished)
                enabled |= 1u << t;
        if (!enabled)
            break;
        if (n == MAX_STEPS) {
            fprintf(stderr, "deque_model: %s: an interleaving ran past %d accesses\n", sc->name,
                    MAX_STEPS);
            exit(1);
        }
        state *st = &S[n];
        for (int p = 0; p < nt; p++)
            st->pending[p] = threads[p].pending;
        int t;
        if (n < prefix) {
            t = st->chosen;
            if (!(enabled & (1u << t)) || st->enabled != enabled) {
                fprintf(stderr, "deque_model: %s: a replay diverged at access %d\n", sc->name, n);
                exit(1);
            }
        } else {
            st->enabled = enabled;
            st->sleep = *redundant ? 0 : carried_sleep;
            for (int p = 0; reduce && !*redundant && p < nt; p++) {
                if (!(enabled & (1u << p)))
                    continue;
                /* The last access that races with p's next one: dependent, by another thread,
                 * and not ordered before p already. p must also be tried before it. */
                for (int i = n - 1; i >= 0; i--) {
                    if (steps[i].t == p || !dependent(steps[i].o, st->pending[p]))
                        continue;
                    if (tc[p][steps[i].t] >= i + 1)
                        continue; /* i happens before p's next access */
                    if (S[i].enabled & (1u << p))
                        S[i].backtrack |= 1u << p;
                    else
                        S[i].backtrack |= S[i].enabled;
                    break;
                }
            }
            unsigned awake = enabled & ~st->sleep;
            if (!awake)
                *redundant = 1; /* every continuation from here was covered already */
            if (*redundant) {
                t = enabled & (1u << prev) ? prev : __builtin_ctz(enabled);
                st->backtrack = st->done = 1u << t;
                st->sleep = 0;
                st->chosen = t;
            } else {
                st->done = 0;
                st->backtrack = reduce ? 0 : enabled;
                unsigned cand = st->backtrack & awake;
                if (!cand) {
                    t = awake & (1u << prev) ? prev : __builtin_ctz(awake);
                    st->backtrack |= 1u << t;
                } else {
                    t = cand & (1u << prev) ? prev : __builtin_ctz(cand);
                }
                st->done |= 1u << t;
                st->chosen = t;
            }
        }
        /* The sleep set of the next state: the threads explored here before t (and those
         * asleep here) stay asleep while t's access does not touch what theirs would. */
        carried_sleep = 0;
        if (reduce && !*redundant) {
            unsigned cands = (st->sleep | (st->done & ~(1u << t))) & enabled & ~(1u << t);
            for (int r = 0; r < nt; r++)
                if ((cands & (1u << r)) && !dependent(st->pending[r], st->pending[t]))
                    carried_sleep |= 1u << r;
        }

        step *sp = &steps[n];
        sp->t = t;
        sp->o = st->pending[t];
        cas_ok = 1;
        to_thread(t);
        /* A compare-exchange that failed wrote nothing: as executed, it was a load. */
        if (sp->o.kind == OP_RMW && !cas_ok)
            sp->o.kind = OP_LOAD;
        trace_event(t, sp->o);
        memcpy(sp->vc, tc[t], sizeof(sp->vc));
        for (int j = 0; j < n; j++)
            if (steps[j].t != t && dependent(steps[j].o, sp->o))
                for (int u = 0; u < MAX_THREADS; u++)
                    if (steps[j].vc[u] > sp->vc[u])
                        sp->vc[u] = steps[j].vc[u];
        sp->vc[t] = (uint16_t)(n + 1);
        memcpy(tc[t], sp->vc, sizeof(sp->vc));
        prev = t;
        n++;
    }
    *depth = n;
    last_trace = trace_hash(nt);
    int bad = check();
    model__deque_destroy(&dq);
    return bad;
}

/* Every interleaving of the scenario (reduced, or all of them). Returns 1 on a failed check;
 * *count: interleavings run, *redundant: how many of them the sleep sets found redundant. */
static int explore(const scenario *s, int reduce, outcomes *o, outcomes *traces, long *count,
                   long *redundant, int *max_depth, int quiet)
{
    sc = s;
    int prefix = 0;
    *count = *redundant = 0;
    *max_depth = 0;
    for (;;) {
        int depth, red;
        int bad = run_one(prefix, reduce, &depth, &red);
        ++*count;
        *redundant += red;
        if (depth > *max_depth)
            *max_depth = depth;
        if (bad) {
            if (!quiet) {
                fprintf(stderr, "deque_model: %s: FAILED after %ld interleavings: %s\n", s->name,
                        *count, failure);
                fprintf(stderr, "deque_model: the schedule (thread of each access):");
                for (int i = 0; i < depth; i++)
                    fprintf(stderr, " %d", steps[i].t);
                fprintf(stderr, "\n");
            }
            return 1;
        }
        if (o)
            outcome_add(o, outcome_hash());
        if (traces)
            outcome_add(traces, last_trace);
        int i = depth - 1;
        while (i >= 0 && !(S[i].backtrack & ~S[i].done & ~S[i].sleep & S[i].enabled))
            i--;
        if (i < 0)
            return 0;
        int q = __builtin_ctz(S[i].backtrack & ~S[i].done & ~S[i].sleep & S[i].enabled);
        S[i].done |= 1u << q;
        S[i].chosen = q;
        prefix = i + 1;
    }
}

/* The unreduced search must find no trace (and so no outcome) that the reduced one missed. */
static int crosscheck(const scenario *s, const outcomes *reduced_traces, long *all_count,
                      int *all_traces)
{
    static outcomes all;
    memset(&all, 0, sizeof(all));
    int depth;
    long redundant;
    if (explore(s, 0, NULL, &all, all_count, &redundant, &depth, 0))
        return 1;
    *all_traces = all.n;
    int missing = 0;
    for (int i = 0; i < OUTCOME_SLOTS; i++)
        missing += all.slot[i] && !outcome_has(reduced_traces, all.slot[i]);
    if (missing || all.n != reduced_traces->n) {
        fprintf(stderr,
                "deque_model: %s: the reduced search covered %d traces, the unreduced one %d "
                "(%d missed): the reduction is unsound\n",
                s->name, reduced_traces->n, all.n, missing);
        return 1;
    }
    return 0;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
    int level = 1;
    if (argc == 2 && strcmp(argv[1], "--quick") == 0)
        level = 0;
    else if (argc == 2 && strcmp(argv[1], "--full") == 0)
        level = 2;
    else if (argc != 1) {
        fprintf(stderr, "usage: %s [--quick | --full]\n", argv[0]);
        return 2;
    }
#ifdef MODEL_TSAN
    sched_fiber = __tsan_get_current_fiber();
#endif
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int failed = 0;
    long total = 0;
    static outcomes o, traces;
    for (size_t i = 0; i < NSCENARIOS; i++) {
        const scenario *s = &scenarios[i];
        if (s->level > level)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        memset(&o, 0, sizeof(o));
        memset(&traces, 0, sizeof(traces));
        long count, redundant, all = 0;
        int depth, all_traces = 0;
        int bad = explore(s, 1, &o, &traces, &count, &redundant, &depth, 0);
        if (!bad && s->crosscheck)
            bad = crosscheck(s, &traces, &all, &all_traces);
        total += count + all;
        failed |= bad;
        printf("deque_model: %-48s %s: %4ld interleavings, %4d traces, %2d outcomes, <= %2d "
               "accesses",
               s->name, bad ? "FAILED" : "ok", count, traces.n, o.n, depth);
        if (all)
            printf("; unreduced: %ld interleavings, the same %d traces", all, all_traces);
        printf(" (%.1fs)\n", seconds_since(&ts));
        fflush(stdout);
    }

    /* Self-check: a compare-exchange that always succeeds must be caught. */
    model_break_cas = 1;
    long count, redundant;
    int depth;
    int caught = explore(&scenarios[0], 1, NULL, NULL, &count, &redundant, &depth, 1);
    model_break_cas = 0;
    total += count;
    printf("deque_model: self-check with a broken compare-exchange: %s after %ld interleavings"
           "%s%s\n",
           caught ? "caught" : "NOT CAUGHT", count, caught ? ": " : "", caught ? failure : "");
    failed |= !caught;

    for (int i = 0; i < MAX_THREADS; i++) {
        free(threads[i].stack);
#ifdef MODEL_TSAN
        if (threads[i].fiber)
            __tsan_destroy_fiber(threads[i].fiber);
#endif
    }
    printf("deque_model: %s: %ld interleavings explored in %.1fs\n", failed ? "FAILED" : "OK",
           total, seconds_since(&t0));
    return failed;
}
