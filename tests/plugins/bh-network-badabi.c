/* Built for a future ABI major the daemon does not speak. */
#define FX_NAME "badabi"
#define FX_ABI_MAJOR (BH_PLUGIN_ABI_MAJOR + 1)
#include "fixture.h"
