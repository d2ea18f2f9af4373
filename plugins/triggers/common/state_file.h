/* Code shared by the trigger plugins, compiled into each .so that pulls it in through its
 * deps.cmake (hidden there): a whole number kept in a file of the trigger instance's own
 * state directory (host->state_dir), the position a trigger resumes from after a restart
 * (cron's last scheduled time, Telegram's update offset). */
#ifndef BH_TRIGGER_COMMON_STATE_FILE_H
#define BH_TRIGGER_COMMON_STATE_FILE_H

#include <boilerhouse/plugin.h>

/* The number in <state_dir>/<name>; `absent` if the file is missing or holds none. */
long long bht_state_read(const struct bh_host_api *host, struct bh_plugin_handle *h,
                         const char *name, long long absent);
/* Replaces <state_dir>/<name> with value atomically and durably (a synced temporary file
 * renamed over it), creating the directory first. 0, or -1 with errno set. */
int bht_state_write(const struct bh_host_api *host, struct bh_plugin_handle *h, const char *name,
                    long long value);

#endif
