// SPDX-License-Identifier: MIT
/*
 * The version and the error texts: the library's run-time version is the header's, and
 * weft_strerror has a text for every code the header documents and a non-NULL one for any int.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"

Test(version, runtime_value_is_the_headers)
{
    cr_assert_eq(weft_version(), WEFT_VERSION, "library %d, header %d", weft_version(),
                 WEFT_VERSION);
    /* Two digits each for minor and patch, or the packed number is ambiguous. */
    cr_assert(WEFT_VERSION_MINOR >= 0 && WEFT_VERSION_MINOR < 100);
    cr_assert(WEFT_VERSION_PATCH >= 0 && WEFT_VERSION_PATCH < 100);
    char text[32];
    snprintf(text, sizeof(text), "%d.%d.%d", WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR,
             WEFT_VERSION_PATCH);
    cr_assert_str_eq(WEFT_VERSION_STRING, text);
}

Test(version, build_system_agrees_with_the_header)
{
    /* WEFT_PROJECT_VERSION is what CMake's project() took (tests/CMakeLists.txt passes it). */
    cr_assert_str_eq(WEFT_PROJECT_VERSION, WEFT_VERSION_STRING);
}

static int in_a_task(void *arg)
{
    const char **out = arg;
    out[0] = weft_strerror(-ECANCELED);
    return weft_version() == WEFT_VERSION ? 0 : -EPROTO;
}

Test(version, callable_from_a_task)
{
    const char *text[1] = {NULL};
    cr_assert_eq(weft_run(&(weft_config){.workers = 1}, in_a_task, text), 0);
    cr_assert_eq(text[0], weft_strerror(-ECANCELED));
}

/* Any int gives a non-empty, constant text: the same pointer each time. */
static void check_any(int code)
{
    const char *a = weft_strerror(code);
    cr_assert_not_null(a, "weft_strerror(%d) is NULL", code);
    cr_assert(a[0] != 0, "weft_strerror(%d) is empty", code);
    cr_assert_eq(weft_strerror(code), a, "weft_strerror(%d) is not the same string twice", code);
}

Test(strerror, any_int)
{
    for (int code = -70000; code <= 70000; code++)
        check_any(code);
    const int edges[] = {INT_MIN, INT_MIN + 1, -4096, -4095, INT_MAX, INT_MAX - 1, 1};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        check_any(edges[i]);
    cr_assert_str_eq(weft_strerror(0), "success");
    /* Outside the errno range: the generic text, never a neighbour's. */
    cr_assert_eq(weft_strerror(INT_MIN), weft_strerror(-4096));
    cr_assert_neq(weft_strerror(INT_MIN), weft_strerror(-EINVAL));
    cr_assert_neq(weft_strerror(1), weft_strerror(0));
}

/* The codes weft gives a meaning of its own say it in weft's terms, not the C library's. */
Test(strerror, own_codes_in_weft_terms)
{
    cr_assert(strstr(weft_strerror(-ECANCELED), "cancel"), "%s", weft_strerror(-ECANCELED));
    cr_assert(strstr(weft_strerror(-ETIMEDOUT), "deadline"), "%s", weft_strerror(-ETIMEDOUT));
    cr_assert(strstr(weft_strerror(-EPERM), "task"), "%s", weft_strerror(-EPERM));
    cr_assert(strstr(weft_strerror(-EDEADLK), "task"), "%s", weft_strerror(-EDEADLK));
    cr_assert(strstr(weft_strerror(-ESHUTDOWN), "runtime"), "%s", weft_strerror(-ESHUTDOWN));
    /* A code weft only hands on from the system keeps the system's description. */
    cr_assert_str_eq(weft_strerror(-ECONNREFUSED), strerrordesc_np(ECONNREFUSED));
}

/* Every "-ENAME" that include/weft.h mentions has a text of its own: not the generic one that a
 * number unknown to the system gets. */
Test(strerror, every_code_the_header_documents)
{
    FILE *f = fopen(WEFT_HEADER_PATH, "r");
    cr_assert_not_null(f, "cannot open %s", WEFT_HEADER_PATH);
    static char text[1 << 18];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    cr_assert(n > 0 && n < sizeof(text) - 1, "weft.h read %zu bytes", n);
    text[n] = 0;

    const char *unknown = weft_strerror(-4096);
    int found = 0;
    for (const char *p = strstr(text, "-E"); p; p = strstr(p + 2, "-E")) {
        char name[32];
        size_t len = 0;
        for (const char *q = p + 1;
             len + 1 < sizeof(name) && ((*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9')); q++)
            name[len++] = *q;
        name[len] = 0;
        if (len < 3)
            continue;
        int value = 0;
        for (int e = 1; e < 4096 && !value; e++) {
            const char *en = strerrorname_np(e);
            if (en && strcmp(en, name) == 0)
                value = e;
        }
        cr_assert(value, "weft.h mentions -%s, which is no errno name", name);
        const char *t = weft_strerror(-value);
        cr_assert(t != unknown && t[0], "weft_strerror(-%s) has no text of its own", name);
        found++;
    }
    /* The header documents its codes: a dozen kinds at least, many times over. */
    cr_assert(found > 100, "only %d codes found in weft.h", found);
}
