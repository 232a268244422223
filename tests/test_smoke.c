// SPDX-License-Identifier: MIT
/* Smoke test of the build: the library links and answers its simplest contracts. */
#include <criterion/criterion.h>
#include <errno.h>

#include "weft.h"

Test(smoke, now_is_monotonic)
{
    weft_time prev = weft_now();
    cr_assert_gt(prev, 0);
    for (int i = 0; i < 100000; i++) {
        weft_time t = weft_now();
        cr_assert_geq(t, prev, "weft_now went back: %lld after %lld", (long long)t,
                      (long long)prev);
        prev = t;
    }
}

Test(smoke, run_without_root_is_einval)
{
    cr_assert_eq(weft_run(NULL, NULL, NULL), -EINVAL);
}
