

#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static uint32_t log_level = BH_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const log_names[] = {"error", "warn", "info", "debug"};

void bh_log_set_level(uint32_t level)
{
    log_level = level;
}

uint32_t bh_log_level(void)
{
    return log_level;
}

int bh_log_parse_level(const char *name, uint32_t *out)
{
    for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
        if (strcasecmp(name, log_names[i]) == 0) {
            *out = (uint32_t)i;
            return 0;
        }
    }
    return -1;
}

/* The message is the free text; quotes and newlines are escaped so one event is one line. */
static void log_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f), fputc(*s, f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

void bh_log(uint32_t level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bh_logv(level, module, fmt, ap);
    va_end(ap);
}

void bh_logv(uint32_t level, const char *module, const char *fmt, va_list ap)
{
    if (level > log_level)
        return;
    char msg[2048], ts[40];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "ts=%s level=%s module=%s msg=\"", ts, log_names[level], module);
    log_escape(stderr, msg);
    fputs("\"\n", stderr);
    pthread_mutex_unlock(&log_lock);
}
