/* Claims a name that its file name does not carry. */
#define FX_NAME "other"
#include "fixture.h"
