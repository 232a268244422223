// SPDX-License-Identifier: MIT
/* The version of the library as it was built: the header a program compiled against may be of
 * another release than the shared library the loader finds. */
#include "weft.h"

int weft_version(void)
{
    return WEFT_VERSION;
}
