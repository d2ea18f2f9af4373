/* Crash points: a test hook that proves every crash point converges on restart. */
#ifndef BH_CRASHPOINT_H
#define BH_CRASHPOINT_H

/* When BOILERHOUSE_CRASH_AT names this point, the process kills itself (SIGKILL) here. */
void bh_crashpoint(const char *name);

#endif
