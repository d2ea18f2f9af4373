/* Error reporting: fallible functions return int (< 0 on error) and fill a caller-owned
 * struct bh_err (defined in the SDK header so plugins share it). */
#ifndef BH_ERR_H
#define BH_ERR_H

#include <boilerhouse/plugin.h>

/* On a fallible function's declaration: its status must be looked at (with -Werror, a
 * silently dropped result is a build failure). */
#define BH_MUST_CHECK __attribute__((warn_unused_result))
/* Deliberately drops the status of call; every use carries a comment saying why. The ! is
 * needed: GCC does not let a (void) cast alone silence warn_unused_result. */
#define BH_IGNORE(call) ((void)!(call))

/* Sets err (if non-NULL) and returns -1. */
int bh_err_set(struct bh_err *err, int code, const char *fmt, ...) BH_PRINTF(3, 4);
/* Like bh_err_set, appending ": strerror(errno)". */
int bh_err_errno(struct bh_err *err, int code, const char *fmt, ...) BH_PRINTF(3, 4);
/* Prefixes an existing message: "<prefix>: <old message>"; keeps the code; returns -1. */
int bh_err_wrap(struct bh_err *err, const char *fmt, ...) BH_PRINTF(2, 3);
void bh_err_clear(struct bh_err *err);
/* HTTP status for an error class. */
int bh_err_http_status(int code);

#endif
