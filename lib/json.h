// SPDX-License-Identifier: MIT
/*
 * Text inside JSON strings, for the dump and the trace: names come from the program (task and
 * scope names are copied as given and cut at a fixed length), so they may hold anything.
 */
#ifndef WEFT_JSON_H
#define WEFT_JSON_H

#include <stddef.h>

/** The most bytes weft__json_escape writes per byte it reads. */
#define WEFT__JSON_ESCAPED_MAX 6

/** Writes `s` (at most `max` bytes, or up to its NUL) at `out` as the inside of a JSON string,
 *  and returns the end of what it wrote: quotes, backslashes and control bytes escaped, whole
 *  UTF-8 characters as they are, and each byte of anything else (a character cut by the length
 *  limit, bytes that are not UTF-8) as U+FFFD, so that the file stays valid JSON. At most
 *  WEFT__JSON_ESCAPED_MAX bytes are written per byte read. Any thread. */
char *weft__json_escape(char *out, const char *s, size_t max);

#endif
