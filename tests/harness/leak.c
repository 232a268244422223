// SPDX-License-Identifier: MIT
/* Self-check of the test harness (WEFT_TEST_HARNESS_SELFCHECK): a Criterion suite whose test
 * body passes but leaks. Registered with WILL_FAIL, so it passes only if the leak makes the suite
 * fail by its exit status alone (see tests/CMakeLists.txt). */
#include <criterion/criterion.h>
#include <stdlib.h>

static void *volatile sink;

Test(harness, leaks_but_passes)
{
    sink = malloc(1234);
    sink = NULL;
    cr_assert(1);
}

Test(harness, clean)
{
    cr_assert(1);
}
