/* Exports something, but not bh_plugin_entry. */
#include <boilerhouse/plugin.h>

BH_PLUGIN_EXPORT int bh_plugin_entry_misspelled(void)
{
    return 0;
}
