/* The runtime seam: what the controllers may ask of whatever runs instances. A runtime is an
 * ops table; the runc/crun driver (runtime_oci.h) is one, the unit tests' in-process fake is
 * another, the Kubernetes driver (core/kube/runtime_kube.h) the third. Controllers name
 * containers with bh_runtime_container_id and never reach past these calls (no runtime binary,
 * no /proc, no cgroup files, no mounts). Calls may come from any thread at once.
 *
 * Two shapes of driver, told apart by bh_runtime_ops.caps:
 *  - host drivers (no BH_RUNTIME_CAP_REMOTE: runc/crun, the fake) run containers on this
 *    machine from what the controllers prepare: a rootfs over image layers, a disk, /etc
 *    files, a network namespace the network plugins wire (bh_runtime_spec);
 *  - remote drivers (BH_RUNTIME_CAP_REMOTE: Kubernetes) are given the workload object and the
 *    instance's identity (bh_runtime_instance) and do all of that themselves elsewhere: the
 *    controllers skip the host steps and use ops->remote (launch, ready, endpoint, assign,
 *    save/restore of the overlay directories, the tenant's credentials of a claim, and the
 *    inventory a new leader adopts from).
 *    Of the host ops they answer delete, alive and list; the others may be NULL (the calls
 *    below then fail with BH_EUNAVAIL naming the driver). */
#ifndef BH_RUNTIME_H
#define BH_RUNTIME_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "proc.h"

struct bh_runtime_state {
    char status[16]; /* "created", "running", "paused", "stopped" */
    int pid;
};

/* Counters of a container since it started; -1 where the driver cannot tell. */
struct bh_runtime_stats {
    long long cpu_ns;    /* CPU time of all its processes */
    long long net_bytes; /* rx+tx bytes of its interfaces but loopback */
    long long mem_bytes; /* memory charged to its cgroup now */
    long long mem_limit; /* its cgroup's memory limit; -1 also when unlimited */
    /* Newest mtime (wall ms) under the workload's idle.watchDirs where only the driver can
     * see the files (a remote instance's); -1 where the daemon scans them itself. */
    long long newest_mtime_ms;
};

/* What one container is made of; every pointer is borrowed for the call. Directories are
 * chosen by the caller and exist (rootfs, upper and work may be empty). */
/* Where an instance sees the daemon's API dir (bh_runtime_spec.api_dir). */
#define BH_RUNTIME_API_DIR "/run/boilerhouse-api"

struct bh_runtime_spec {
    const char *id;      /* container id, from bh_runtime_container_id */
    const char *bundle;  /* a directory the driver may keep this container's files in */
    char *const *layers; /* image layer dirs, bottom first */
    size_t n_layers;
    const char *disk;       /* dir holding upper and work; the driver may mount a disk there */
    const char *disk_image; /* the file a driver backs that disk with */
    uint64_t disk_bytes;    /* bound on what the container writes outside tmpfs; 0 = none */
    const char *upper;      /* the container's writable layer, below disk */
    const char *work;       /* scratch dir of the writable layer, below disk */
    const char *rootfs;     /* where the merged root appears on the host */
    const char *log_path;   /* the container's stdout/stderr (appended) */
    char *const *args;      /* process argv (NULL-terminated) */
    char *const *env;       /* "K=V" (NULL-terminated) */
    const char *cwd;        /* "/" if NULL */
    const char *hostname;
    double vcpus;           /* fractional allowed; 0 = no CPU limit */
    long memory_mb;         /* 0 = no limit */
    uint32_t uid_base;      /* host uid/gid that container root maps to */
    uint32_t uid_size;      /* size of the mapping */
    const char *socket_dir; /* host dir the container sees at /run/boilerhouse, or NULL */
    /* The daemon's API for the instance (per-claim tokens): api_dir is bound read-only at
     * BH_RUNTIME_API_DIR, api_socket (the daemon's instance socket) at .../api.sock inside it
     * (api_dir holds an empty api.sock to mount over). Both NULL: none. */
    const char *api_dir;
    const char *api_socket;
    const char *etc_dir; /* host dir of identity files bound over /etc (etc_files.h), or NULL */
    size_t n_etc_files;  /* how many of bh_etc_files it holds */
    /* disk_image already holds a disk (a restored snapshot, docs/snapshot-format.md): mount it
     * instead of making a fresh one, and keep of its writable layer only the paths in
     * disk_keep (absolute in-container paths, NULL-terminated): the rest starts fresh. */
    int disk_reuse;
    char *const *disk_keep;
};

struct bh_runtime;

/* What a driver is (bh_runtime_ops.caps). */
enum bh_runtime_caps {
    /* Runs instances elsewhere from the workload object: ops->remote is set, and none of the
     * host's boot steps (image layers, rootfs, disk, /etc files, network plugins) apply. */
    BH_RUNTIME_CAP_REMOTE = 1 << 0,
    /* Its instances are seen by other daemons too (replicas on one cluster): startup recovery
     * never deletes an instance only because this daemon holds no record of it. */
    BH_RUNTIME_CAP_SHARED = 1 << 1,
};

/* Who one instance of a remote driver is; every pointer borrowed for the call. */
struct bh_runtime_instance {
    const char *id;          /* container id, from bh_runtime_container_id */
    const char *instance_id; /* the Instance record's name */
    const cJSON *workload;   /* the validated workload it runs (its metadata.generation too) */
    const char *tenant;      /* NULL for a warm pool instance */
    const char *claim;       /* the claim it is for, or NULL */
    const char *pool;        /* the pool that made it, or NULL */
    int restore;             /* the tenant's saved data comes in (bh_runtime_restore) before
                              * its workload starts */
    const char *image_user;  /* the image config's User ("1000", "app:app"), NULL if unknown */
};

/* What a remote instance's save wrote (bh_runtime_save). */
struct bh_runtime_saved {
    char digest[65]; /* SHA-256 of the file */
    uint64_t size;   /* its bytes */
    uint64_t files;  /* entries archived */
};

/* Where clients reach a remote instance. */
struct bh_runtime_endpoint {
    char host[64]; /* an IP address */
    int port;      /* the first exposed port; 0 when it exposes none */
};

/* One value of a claim's tenant for a remote instance (bh_runtime_credentials): the header
 * that the instance's egress proxy adds for domain, as spec.network.credentials names it.
 * Every pointer borrowed; value is a secret. */
struct bh_runtime_credential {
    const char *domain;
    const char *header;
    const char *value;
};

/* How an instance found by bh_runtime_inventory is doing. */
enum bh_runtime_found_state {
    BH_RUNTIME_FOUND_STARTING, /* not ready (yet) */
    BH_RUNTIME_FOUND_READY,
    BH_RUNTIME_FOUND_ENDED, /* exited, failed or being deleted: never ready again */
};

/* One instance of a shared driver as it describes itself where it runs (a Pod's labels and
 * annotations): enough, with its workload, to rebuild its Instance record. Strings owned. */
struct bh_runtime_found {
    char *id;             /* container id, bh_runtime_container_id(instance_id) */
    char *instance_id;    /* 12 lowercase hex */
    char *workload;       /* the workload's name */
    long long generation; /* the workload's metadata.generation it was built from (> 0) */
    char *tenant;         /* the real tenant ID; NULL for an unclaimed pool instance */
    char *claim;          /* the claim it was made or taken for (set with tenant), or NULL */
    char *pool;           /* the pool that made it, or NULL */
    char *image_digest;   /* the image the workload had resolved when it was made, or NULL */
    enum bh_runtime_found_state state;
    struct bh_runtime_endpoint endpoint; /* host "" while it has no address */
};

/* The ops of a remote driver; each returns 0 or -1 with err set unless said. */
struct bh_runtime_remote_ops {
    /* Creates what runs the instance and returns without waiting for it. */
    int (*launch)(struct bh_runtime *rt, const struct bh_runtime_instance *inst,
                  struct bh_err *err);
    /* One look at a launched instance: 1 ready; 0 not yet (err says what it waits for, or why
     * the look failed: asked again); -1 failed for good (err says why: it exited, crashed,
     * was deleted). A warm pool instance found ready is marked so where the driver keeps it. */
    int (*ready)(struct bh_runtime *rt, const char *id, struct bh_err *err);
    int (*endpoint)(struct bh_runtime *rt, const char *id, struct bh_runtime_endpoint *ep,
                    struct bh_err *err);
    /* Hands a ready warm instance to inst->tenant and inst->claim in one step checked against
     * the version it was read at: BH_ECONFLICT when another taker has it; BH_EUNAVAIL when it
     * runs another generation than inst->workload's (never handed out stale) or is going. */
    int (*assign)(struct bh_runtime *rt, const struct bh_runtime_instance *inst,
                  struct bh_err *err);
    /* Writes the instance's overlay directories into out_path (made 0600, fsync'd) as a plain
     * tar snapshot (docs/snapshot-format.md; never encrypted: the key stays with the caller).
     * BH_EUNAVAIL while it cannot be reached. NULL: the driver keeps no data. */
    int (*save)(struct bh_runtime *rt, const char *id, const char *out_path,
                struct bh_runtime_saved *saved, struct bh_err *err);
    /* Hands an instance launched with inst->restore the plain snapshot at in_path (checked
     * against digest where it lands) before its workload starts; waits up to timeout_ms for
     * the instance to take it. */
    int (*restore)(struct bh_runtime *rt, const char *id, const char *in_path, const char *digest,
                   int timeout_ms, struct bh_err *err);
    /* Hands a running instance the values of its claim's tenant secrets (the workload's
     * tenantSecretKeyRef credential headers, all n of them, resolved by the caller), which
     * replace any it held: its egress proxy injects them from then on. The instance keeps
     * them in memory only; the driver never logs or stores a value. Waits up to timeout_ms
     * for the instance to take them (one that cannot be reached yet is asked again), then
     * fails with BH_ETIMEOUT; a refusal fails at once. NULL: the driver cannot (a claim that
     * needs it fails). */
    int (*credentials)(struct bh_runtime *rt, const char *id,
                       const struct bh_runtime_credential *creds, size_t n, int timeout_ms,
                       struct bh_err *err);
    /* Every instance the driver holds, whichever daemon made it, each as it describes itself
     * (*found owned: bh_runtime_found_free; *n entries). One that cannot describe itself (a
     * label or annotation missing or malformed) is left out and logged with why: it may be
     * another system's, and nothing may adopt or delete it. -1 when the driver cannot be
     * asked: nothing is known then, and no caller may conclude that an instance is gone.
     * NULL: the driver keeps nothing another daemon could take over. */
    int (*inventory)(struct bh_runtime *rt, struct bh_runtime_found **found, size_t *n,
                     struct bh_err *err);
};

/* Every op but close returns 0 or -1 with err set; ids are container ids. Unknown ids are
 * BH_ENOTFOUND, except where said. `pid` arguments are the hint create returned (the driver
 * may use it to answer without asking the runtime; a driver without pids ignores it). */
struct bh_runtime_ops {
    /* Makes spec->rootfs the merged root of layers + upper, before create (so files can be
     * put into it before any process starts). With disk_bytes, spec->disk first becomes a
     * filesystem of that size (backed by disk_image), so writes past it fail with ENOSPC;
     * then upper and work (and whatever else the caller puts below disk) are bounded. */
    int (*rootfs_prepare)(struct bh_runtime *rt, const struct bh_runtime_spec *spec,
                          struct bh_err *err);
    /* Releases what rootfs_prepare made at rootfs and disk; succeeds if there is nothing. */
    int (*rootfs_release)(struct bh_runtime *rt, const char *rootfs, const char *disk,
                          struct bh_err *err);
    /* Creates the container (its init waits for start); *pid is its init's pid hint. */
    int (*create)(struct bh_runtime *rt, const struct bh_runtime_spec *spec, int *pid,
                  struct bh_err *err);
    int (*start)(struct bh_runtime *rt, const char *id, struct bh_err *err);
    int (*state)(struct bh_runtime *rt, const char *id, struct bh_runtime_state *st,
                 struct bh_err *err);
    /* True if the container runs or is paused; cheap enough for the claim path. */
    int (*alive)(struct bh_runtime *rt, const char *id, int pid);
    int (*kill)(struct bh_runtime *rt, const char *id, int sig, struct bh_err *err);
    /* Force-deletes; succeeds if id does not exist. */
    int (*delete)(struct bh_runtime *rt, const char *id, struct bh_err *err);
    int (*pause)(struct bh_runtime *rt, const char *id, struct bh_err *err);
    int (*resume)(struct bh_runtime *rt, const char *id, struct bh_err *err);
    /* Runs argv inside the container (no shell added); res is always safe to free. */
    int (*exec)(struct bh_runtime *rt, const char *id, char *const *argv, int timeout_ms,
                struct bh_proc_result *res, struct bh_err *err);
    int (*stats)(struct bh_runtime *rt, const char *id, int pid, struct bh_runtime_stats *st,
                 struct bh_err *err);
    /* The container's network namespace as a path network plugins and probes can enter,
     * owned; NULL when it has none of its own. */
    char *(*netns_path)(struct bh_runtime *rt, const char *id, int pid);
    /* Container ids the runtime holds, owned NULL-terminated (bh_strv_free). */
    int (*list)(struct bh_runtime *rt, char ***ids, struct bh_err *err);
    void (*close)(struct bh_runtime *rt);
    unsigned caps;                              /* enum bh_runtime_caps */
    const struct bh_runtime_remote_ops *remote; /* with BH_RUNTIME_CAP_REMOTE */
};

/* A driver's state starts with this. */
struct bh_runtime {
    const struct bh_runtime_ops *ops;
    const char *name; /* e.g. "runc"; borrowed from the driver */
};

/* The container id of an instance ("bh-<instance id>"), owned. */
char *bh_runtime_container_id(const char *instance_id);
/* Whether id is an instance id: 12 lowercase hex characters (nothing else names a path or a
 * request). */
int bh_runtime_id_valid(const char *id);
/* The instance id a container id names (borrowed from cid), or NULL if it names none. */
const char *bh_runtime_instance_id(const char *cid);

const char *bh_runtime_name(const struct bh_runtime *rt);
/* True if rt has every capability of caps (enum bh_runtime_caps). */
int bh_runtime_has(const struct bh_runtime *rt, unsigned caps);
void bh_runtime_close(struct bh_runtime *rt);
int bh_runtime_rootfs_prepare(struct bh_runtime *rt, const struct bh_runtime_spec *spec,
                              struct bh_err *err);
int bh_runtime_rootfs_release(struct bh_runtime *rt, const char *rootfs, const char *disk,
                              struct bh_err *err);
int bh_runtime_create(struct bh_runtime *rt, const struct bh_runtime_spec *spec, int *pid,
                      struct bh_err *err);
int bh_runtime_start(struct bh_runtime *rt, const char *id, struct bh_err *err);
int bh_runtime_state(struct bh_runtime *rt, const char *id, struct bh_runtime_state *st,
                     struct bh_err *err);
int bh_runtime_alive(struct bh_runtime *rt, const char *id, int pid);
int bh_runtime_kill(struct bh_runtime *rt, const char *id, int sig, struct bh_err *err);
int bh_runtime_delete(struct bh_runtime *rt, const char *id, struct bh_err *err);
int bh_runtime_pause(struct bh_runtime *rt, const char *id, struct bh_err *err);
int bh_runtime_resume(struct bh_runtime *rt, const char *id, struct bh_err *err);
int bh_runtime_exec(struct bh_runtime *rt, const char *id, char *const *argv, int timeout_ms,
                    struct bh_proc_result *res, struct bh_err *err);
int bh_runtime_stats(struct bh_runtime *rt, const char *id, int pid, struct bh_runtime_stats *st,
                     struct bh_err *err);
char *bh_runtime_netns_path(struct bh_runtime *rt, const char *id, int pid);
int bh_runtime_list(struct bh_runtime *rt, char ***ids, struct bh_err *err);
/* The remote ops (BH_EUNAVAIL on a host driver). */
int bh_runtime_launch(struct bh_runtime *rt, const struct bh_runtime_instance *inst,
                      struct bh_err *err);
int bh_runtime_ready(struct bh_runtime *rt, const char *id, struct bh_err *err);
int bh_runtime_endpoint(struct bh_runtime *rt, const char *id, struct bh_runtime_endpoint *ep,
                        struct bh_err *err);
int bh_runtime_assign(struct bh_runtime *rt, const struct bh_runtime_instance *inst,
                      struct bh_err *err);
int bh_runtime_save(struct bh_runtime *rt, const char *id, const char *out_path,
                    struct bh_runtime_saved *saved, struct bh_err *err);
int bh_runtime_restore(struct bh_runtime *rt, const char *id, const char *in_path,
                       const char *digest, int timeout_ms, struct bh_err *err);
int bh_runtime_credentials(struct bh_runtime *rt, const char *id,
                           const struct bh_runtime_credential *creds, size_t n, int timeout_ms,
                           struct bh_err *err);
int bh_runtime_inventory(struct bh_runtime *rt, struct bh_runtime_found **found, size_t *n,
                         struct bh_err *err);
/* Frees the strings of one entry (and zeroes it); of n entries and the array. */
void bh_runtime_found_clear(struct bh_runtime_found *f);
void bh_runtime_found_free(struct bh_runtime_found *found, size_t n);

/* Caps a container log: when path exceeds cap bytes, its content moves to path.1 (replacing
 * it) and path is truncated; the container keeps writing through its O_APPEND fd. */
int bh_runtime_log_rotate(const char *path, size_t cap, struct bh_err *err);

#endif
