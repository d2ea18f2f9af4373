

#include "mem.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "err.h"

/* Writes msg to stderr and aborts; nothing allocated, so it works when memory is gone. */
__attribute__((noreturn)) static void mem_die(const char *msg, size_t len)
{
    BH_IGNORE(write(2, msg, len)); /* about to abort: nothing to do if stderr is gone */
    abort();
}

static void *mem_check(void *p)
{
    static const char msg[] = "boilerhouse: out of memory\n";
    if (!p)
        mem_die(msg, sizeof(msg) - 1);
    return p;
}

/* cJSON allocates through these from the start of every process linking the core (the
 * daemon, the CLI, the tests), so its out-of-memory aborts like every other allocation
 * instead of returning NULL into callers that do not check. A constructor rather than a call
 * in main, so no process (tests included) can start without it; mem.c is always linked
 * because everything allocates through it. cJSON reallocates with malloc + copy when hooked. */
__attribute__((constructor)) static void mem_hook_cjson(void)
{
    cJSON_Hooks hooks = {.malloc_fn = bh_xmalloc, .free_fn = free};
    cJSON_InitHooks(&hooks);
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
    static const char msg[] = "boilerhouse: bh_xstrdup(NULL)\n";
    if (!s)
        mem_die(msg, sizeof(msg) - 1);
    return mem_check(strdup(s));
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
