/* Allocation helpers that abort on out-of-memory (a daemon that cannot allocate a few bytes
 * cannot make progress safely), and cleanup attributes for locals. */
#ifndef BH_MEM_H
#define BH_MEM_H

#include <stddef.h>
#include <stdio.h>

void *bh_xmalloc(size_t n);
void *bh_xcalloc(size_t n, size_t size);
void *bh_xrealloc(void *p, size_t n);
/* s must not be NULL: a NULL is a caller's bug, so it aborts naming itself (it used to
 * return "" silently, hiding the bug). Copy an optional string with s ? bh_xstrdup(s) : NULL. */
char *bh_xstrdup(const char *s);
char *bh_xstrndup(const char *s, size_t n);
char *bh_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Frees a NULL-terminated vector of owned strings (NULL is fine). */
void bh_strv_free(char **v);

void bh_freep(void *pp);   /* free(*(void **)pp) */
void bh_fclosep(FILE **f); /* fclose if open */
void bh_closep(int *fd);   /* close if >= 0 */

#define bh_autofree __attribute__((cleanup(bh_freep)))
#define bh_autoclose __attribute__((cleanup(bh_closep)))
#define bh_autofclose __attribute__((cleanup(bh_fclosep)))

/* Transfers ownership out of a cleanup-managed local. */
#define BH_STEAL(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) bh_steal_tmp_ = (p);                                                         \
        (p) = NULL;                                                                                \
        bh_steal_tmp_;                                                                             \
    })

#define BH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
