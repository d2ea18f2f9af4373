

#include "mem.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *mem_check(void *p)
{
    if (!p) {
        static const char msg[] = "boilerhouse: out of memory\n";
        (void)!write(2, msg, sizeof(msg) - 1);
        abort();
    }
    return p;
}

void *bh_xmalloc(size_t n)
{
    return mem_check(malloc(n ? n : 1));
}

void *bh_xcalloc(size_t n, size_t size)
{
    return mem_check(calloc(n ? n : 1, size ? size : 1));
}

void *bh_xrealloc(void *p, size_t n)
{
    return mem_check(realloc(p, n ? n : 1));
}

char *bh_xstrdup(const char *s)
{
    return mem_check(strdup(s ? s : ""));
}

char *bh_xstrndup(const char *s, size_t n)
{
    return mem_check(strndup(s, n));
}

char *bh_xasprintf(const char *fmt, ...)
{
    char *out = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&out, fmt, ap);
    va_end(ap);
    return mem_check(r < 0 ? NULL : out);
}

void bh_freep(void *pp)
{
    free(*(void **)pp);
}

void bh_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

void bh_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

void bh_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}
