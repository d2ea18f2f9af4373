/* Running external programs (runc, ip, nft, buildah) without a shell: argv goes straight to
 * execve, so nothing a tenant supplies is ever interpreted by a shell. */
#ifndef BH_PROC_H
#define BH_PROC_H

#include <stddef.h>

#include "err.h"

struct bh_proc_result {
    int exit_code; /* exit status, or 128+signal */
    char *out;     /* captured stdout (owned, NUL-terminated), NULL if not captured */
    size_t out_len;
    char *errout; /* captured stderr (owned) */
    size_t err_len;
};

struct bh_proc_opts {
    const char *stdin_data; /* fed to the child's stdin, may be NULL (then /dev/null) */
    size_t stdin_len;
    size_t max_output; /* per stream; 0 means 1 MiB; excess is discarded */
    int timeout_ms;    /* 0 means none; on expiry the child is SIGKILLed */
    int stdout_fd;     /* if >= 0, child stdout/stderr go here instead of being captured */
};

/* Runs argv and waits. Returns 0 when it ran (check res->exit_code), -1 if it could not be
 * started or timed out. */
BH_MUST_CHECK int bh_proc_run(const char *const argv[], const struct bh_proc_opts *opts,
                              struct bh_proc_result *res, struct bh_err *err);
/* Runs argv; a non-zero exit becomes an error carrying the first line(s) of its stderr. */
BH_MUST_CHECK int bh_proc_check(const char *const argv[], struct bh_err *err);
void bh_proc_result_free(struct bh_proc_result *res);

#endif
