/* The daemon's settings (struct bh_settings, ctx.h) from one table: each setting's name,
 * environment variable, `serve` flag, type, default, range and help. The table drives the
 * environment, the flags and `serve --help`; a malformed value is an error naming its
 * variable or flag, never a silent default. */
#ifndef BH_SETTINGS_H
#define BH_SETTINGS_H

#include <stdio.h>

#include "ctx.h"
#include "err.h"

/* Where plugins load from unless configured: defined per executable (plugin_dir.c), so the
 * build tree's daemon and the installed one are one source with two defaults. */
extern const char bh_settings_default_plugin_dir[];
/* The same for the dashboard's built files (served at /ui). */
extern const char bh_settings_default_ui_dir[];
/* The egress sidecar program (bh-egress) that `boilerhouse egress-proxy` execs. */
extern const char bh_settings_default_egress_proxy[];

/* Sets every default, then what the environment sets (an empty variable counts as unset).
 * s is always filled (owned strings): bh_settings_free it even on error. */
BH_MUST_CHECK int bh_settings_from_env(struct bh_settings *s, struct bh_err *err);
/* Applies serve's flags over s; argv[0] is the subcommand. --help sets *help and stops. */
BH_MUST_CHECK int bh_settings_from_args(struct bh_settings *s, int argc, char **argv, int *help,
                                        struct bh_err *err);
/* `boilerhouse serve --help`: every setting with its flag, variable, default and range. */
void bh_settings_print_help(FILE *f);
void bh_settings_free(struct bh_settings *s);

#endif
