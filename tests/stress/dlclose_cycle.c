// SPDX-License-Identifier: MIT
/*
 * A program that loads libweft.so itself (dlopen), runs a runtime through it and unloads it
 * (dlclose), again and again, with a SIGSEGV handler of its own installed first. The library
 * leaves a fault handler installed (it reports task stack overflows, then hands other faults on
 * to the handler it found) and may leave a thread behind (the dump's): unmapped by dlclose, they
 * would run code that is gone. libweft.so is linked to stay loaded (-z nodelete).
 *
 * Checked: every run returns 0 with its blocking call made; after each dlclose the library is
 * still loaded (dlopen with RTLD_NOLOAD finds it); a fault of the program's own afterwards
 * reaches the program's handler.
 *
 * Built without weft linked in; WEFT_SHARED_PATH names the library.
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "weft.h"

#define CYCLES 20

typedef int (*run_fn)(const weft_config *, weft_fn, void *);
typedef int (*blocking_fn)(weft_fn, void *, int *);

static blocking_fn blocking;
static atomic_int calls;
static sigjmp_buf back;
static volatile sig_atomic_t faults_seen;

static int on_pool(void *arg)
{
    (void)arg;
    atomic_fetch_add(&calls, 1);
    return 0;
}

static int root(void *arg)
{
    (void)arg;
    int result = -1;
    int rc = blocking(on_pool, NULL, &result);
    return rc ? rc : result;
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    faults_seen++;
    siglongjmp(back, 1);
}

int main(void)
{
    static int failures;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);

    for (int i = 0; i < CYCLES; i++) {
        void *lib = dlopen(WEFT_SHARED_PATH, RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            fprintf(stderr, "dlclose_cycle: dlopen: %s\n", dlerror());
            return 1;
        }
        run_fn run = (run_fn)dlsym(lib, "weft_run");
        blocking = (blocking_fn)dlsym(lib, "weft_blocking");
        if (!run || !blocking) {
            fprintf(stderr, "dlclose_cycle: dlsym: %s\n", dlerror());
            return 1;
        }
        int rc = run(&(weft_config){.workers = 2, .dump_signal = SIGQUIT}, root, NULL);
        if (rc != 0) {
            fprintf(stderr, "dlclose_cycle: cycle %d: weft_run returned %d\n", i, rc);
            failures++;
        }
        dlclose(lib);
        void *still = dlopen(WEFT_SHARED_PATH, RTLD_NOW | RTLD_NOLOAD);
        if (!still) {
            fprintf(stderr, "dlclose_cycle: cycle %d: dlclose unloaded the library\n", i);
            failures++;
        } else {
            dlclose(still);
        }
    }
    if (atomic_load(&calls) != CYCLES) {
        fprintf(stderr, "dlclose_cycle: %d blocking calls ran, %d made\n", atomic_load(&calls),
                CYCLES);
        failures++;
    }
    /* The program's own fault, a store to a page it mapped without access: its handler must
     * see it, through the library's handler, which hands on what is not a task's overflow. */
    volatile int *closed = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (closed == MAP_FAILED) {
        fprintf(stderr, "dlclose_cycle: mmap failed\n");
        return 1;
    }
    if (sigsetjmp(back, 1) == 0)
        *closed = 1;
    if (faults_seen != 1) {
        fprintf(stderr, "dlclose_cycle: the program's handler saw %d faults, not 1\n",
                (int)faults_seen);
        failures++;
    }
    printf("dlclose_cycle: %s: %d cycles of dlopen, weft_run and dlclose\n",
           failures ? "FAILED" : "OK", CYCLES);
    return failures ? 1 : 0;
}
