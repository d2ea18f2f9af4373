#include "crashpoint.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void bh_crashpoint(const char *name)
{
    const char *at = getenv("BOILERHOUSE_CRASH_AT");
    if (at && strcmp(at, name) == 0) {
        bh_warn("crashpoint", "crash point %s reached: killing the daemon (test hook)", name);
        raise(SIGKILL);
    }
}
