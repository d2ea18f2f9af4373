/* A well-formed network plugin with a config schema. */
#define FX_NAME "good"
#include "fixture.h"
