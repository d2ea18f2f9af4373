/* Structured log lines on stderr: `ts=... level=... module=... msg="..." key=value`. */
#ifndef BH_LOG_H
#define BH_LOG_H

#include <boilerhouse/plugin.h>
#include <stdarg.h>

void bh_log_set_level(uint32_t level);
/* Parses "error|warn|info|debug"; returns -1 if unknown. */
int bh_log_parse_level(const char *name, uint32_t *out);
uint32_t bh_log_level(void);
void bh_log(uint32_t level, const char *module, const char *fmt, ...) BH_PRINTF(3, 4);
void bh_logv(uint32_t level, const char *module, const char *fmt, va_list ap);

#define bh_error(mod, ...) bh_log(BH_LOG_ERROR, mod, __VA_ARGS__)
#define bh_warn(mod, ...) bh_log(BH_LOG_WARN, mod, __VA_ARGS__)
#define bh_info(mod, ...) bh_log(BH_LOG_INFO, mod, __VA_ARGS__)
#define bh_debug(mod, ...) bh_log(BH_LOG_DEBUG, mod, __VA_ARGS__)

#endif
