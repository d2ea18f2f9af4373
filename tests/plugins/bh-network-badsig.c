/* Right ABI number, but built with a different layout (say, 32-bit pointers). */
#define FX_NAME "badsig"
#define FX_SIG "bh-abi-1-ptr4-1234"
#include "fixture.h"
