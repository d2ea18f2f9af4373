/* Compiled into each executable with its own BH_DEFAULT_PLUGIN_DIR, BH_DEFAULT_UI_DIR and
 * BH_DEFAULT_EGRESS_PROXY: the build tree's daemon and the installed daemon are one source
 * with two defaults. */
#include "settings.h"

const char bh_settings_default_plugin_dir[] = BH_DEFAULT_PLUGIN_DIR;
const char bh_settings_default_ui_dir[] = BH_DEFAULT_UI_DIR;
const char bh_settings_default_egress_proxy[] = BH_DEFAULT_EGRESS_PROXY;
