/* Strict parsing of the integers people type: query parameters, settings, flags. strtol alone
 * accepts "12abc", "", " 7" and overflows silently; every caller needs the same checks. */
#ifndef BH_NUM_H
#define BH_NUM_H

#include "err.h"

/* Parses all of s as a base-10 integer in [min, max]: an optional '-', then digits only, no
 * leading space, nothing after, no overflow. On failure err says which of these is wrong
 * (without the field's name: the caller prefixes it) and *out is unchanged. */
BH_MUST_CHECK int bh_num_parse(const char *s, long long min, long long max, long long *out,
                               struct bh_err *err);

#endif
