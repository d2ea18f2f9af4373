/* An info struct that ends before the ops pointer. */
#define FX_NAME "small"
#define FX_SIZE offsetof(struct bh_plugin_info, ops)
#include "fixture.h"
