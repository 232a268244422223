// SPDX-License-Identifier: MIT
/* Text inside JSON strings (json.h). */
#include "json.h"

#include <stdint.h>

/* The length of the whole, well-formed UTF-8 character at s[0] within `left` bytes (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_length(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n > left || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

char *weft__json_escape(char *out, const char *s, size_t max)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t len = 0;
    while (len < max && u[len])
        len++;
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = (char)c;
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            *out++ = '\\';
            *out++ = 'u';
            *out++ = '0';
            *out++ = '0';
            *out++ = digits[c >> 4];
            *out++ = digits[c & 15];
            i++;
        } else if (c < 0x80) {
            *out++ = (char)c;
            i++;
        } else {
            size_t n = utf8_length(u + i, len - i);
            if (n == 0) {
                for (const char *r = "\\ufffd"; *r; r++)
                    *out++ = *r;
                i++;
            } else {
                for (size_t k = 0; k < n; k++)
                    *out++ = (char)u[i + k];
                i += n;
            }
        }
    }
    return out;
}
