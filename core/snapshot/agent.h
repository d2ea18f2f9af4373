/* The snapshot agent: a Pod's overlay directories in the snapshot format, over HTTP.
 *
 * In Kubernetes mode the daemon cannot see a Pod's files. The agent runs inside the Pod (a
 * sidecar beside the workload to hibernate it, an init container before it to restore it)
 * with every overlay directory below one root: one emptyDir that the workload mounts once per
 * overlay directory with a subPath, so that a restore can exchange whole directories, which
 * it could not do with mount points. The daemon pulls and pushes archives:
 *
 *   GET  /v1/snapshot   200: the overlay directories as a plain snapshot (never encrypted:
 *                       the key stays with the daemon), X-Boilerhouse-Digest: its SHA-256,
 *                       X-Boilerhouse-Files: entries archived
 *   PUT  /v1/snapshot   a plain snapshot, X-Boilerhouse-Digest required: verified, then
 *                       restored by bh_snapshot_restore's rules (all or nothing) -> 204
 *   POST /v1/done       nothing to restore -> 204
 *   GET  /v1/activity   200 {"netActivity": N, "newestMtimeMs": M}: what idle detection
 *                       reads of the Pod (agent_activity.c): N grows with every byte the
 *                       Pod's TCP sockets move and every connection seen, the agent's own
 *                       and the kubelet's (the probe peer's) left out; M is the newest mtime
 *                       under the watched directories (0: none); not served in restore mode
 *   GET  /healthz       200
 *
 * With a token file, every request but /healthz needs "Authorization: Bearer <token>". In
 * restore mode the agent exits 0 after the first successful PUT or POST /v1/done, which is
 * what lets the Pod's workload container start. One archive operation runs at a time.
 * Errors are text/plain with a status from the error class (422 for a refused snapshot). */
#ifndef BH_AGENT_H
#define BH_AGENT_H

#include <stdint.h>

#include "err.h"
#include "snapshot.h"

#define BH_AGENT_PATH "/v1/snapshot"
#define BH_AGENT_DONE_PATH "/v1/done"
#define BH_AGENT_ACTIVITY_PATH "/v1/activity"
#define BH_AGENT_DIGEST_HEADER "X-Boilerhouse-Digest"
#define BH_AGENT_FILES_HEADER "X-Boilerhouse-Files"

struct bh_agent_cfg {
    const char *host;       /* IPv4 address to listen on */
    int port;               /* 0: any (bh_agent_port tells) */
    const char *root;       /* the directory the overlay directories are below */
    char *const *dirs;      /* overlay directories, absolute in-container paths, NULL-terminated */
    const char *scratch;    /* where archives are staged: on root's filesystem, outside dirs */
    const char *token;      /* NULL: no authentication */
    char *const *watch;     /* idle.watchDirs below dirs (in-container paths); NULL: none */
    const char *probe_peer; /* the kubelet's address, whose connections are not activity */
    int restore_once;       /* exit after the first restore (or "done") */
    enum bh_snapshot_compression compression;
};

struct bh_agent;

BH_MUST_CHECK int bh_agent_start(const struct bh_agent_cfg *cfg, struct bh_agent **out,
                                 struct bh_err *err);
int bh_agent_port(const struct bh_agent *a);
/* Blocks until SIGTERM/SIGINT (0) or, in restore mode, the restore is done (0). The caller
 * blocks those signals in every thread first (bh_agent_main does). */
int bh_agent_wait(struct bh_agent *a);
void bh_agent_stop(struct bh_agent *a);

/* `boilerhouse snapshot-agent ...`: parses argv, runs the agent, returns the exit code. */
int bh_agent_main(int argc, char **argv);

/* The daemon's side. base is "http://HOST:PORT"; token NULL: none. */
/* Downloads the Pod's snapshot into out_path (0600, fsync'd) and checks it against the
 * digest the agent sent; info describes the file. Fails (out_path removed) on any error. */
BH_MUST_CHECK int bh_agent_fetch(const char *base, const char *token, const char *out_path,
                                 struct bh_snapshot_info *info, struct bh_err *err);
/* Sends a plain snapshot file with its digest for the agent to restore. */
BH_MUST_CHECK int bh_agent_push(const char *base, const char *token, const char *in_path,
                                const char *digest, struct bh_err *err);
/* The activity counters of GET /v1/activity. */
struct bh_agent_counters {
    long long net;             /* grows with network activity */
    long long newest_mtime_ms; /* wall ms; 0: no watched file */
};
BH_MUST_CHECK int bh_agent_activity(const char *base, const char *token,
                                    struct bh_agent_counters *out, struct bh_err *err);
/* Tells an agent in restore mode there is nothing to restore. */
BH_MUST_CHECK int bh_agent_done(const char *base, const char *token, struct bh_err *err);

#endif
