// SPDX-License-Identifier: MIT
/* The asymmetric barrier; see barrier.h for what it guarantees and who uses it. */
#include "barrier.h"

#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/membarrier.h>

#include "tsan.h"

int weft__barrier_supported(void)
{
#ifdef WEFT_TSAN
    return 0;
#else
    /* 0: not asked yet; 1: registered; -1: not available. Registering twice is harmless. */
    static _Atomic int state;
    int s = atomic_load_explicit(&state, memory_order_acquire);
    if (s == 0) {
        long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
        s = cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
                    syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0
                ? 1
                : -1;
        atomic_store_explicit(&state, s, memory_order_release);
    }
    return s == 1;
#endif
}

int weft__barrier_heavy(void)
{
    return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0 ? 0 : -1;
}
