/* Host ports (spec.network.expose[].host): see bridge.h. A published port is a file
 * <state>/network-expose/<port> holding "<instance id> <table>", created exclusively, so a
 * port is published once across every bridged plugin of the daemon, plus an element of the
 * owning plugin's `expose` map (host port -> instance address . guest port). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bridge.h"

static void bhn_expose_dir(char *out, size_t outlen)
{
    /* Host ports are one daemon-wide resource shared by every bridged plugin, so the registry
     * sits beside the plugins' own dirs (<state>/net/<name>), where ABI 1 kept it. */
    snprintf(out, outlen, "%s/../../network-expose", bhn_host->state_dir(bhn_handle));
}

/* 1 if the port's file names owner ("<id> <table>"), 0 if it names another, -1 if absent. */
static int bhn_expose_owner(const char *path, const char *owner, char *who, size_t wholen)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[256] = "";
    if (!fgets(line, sizeof(line), f))
        line[0] = '\0';
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    snprintf(who, wholen, "%s", line);
    return strcmp(line, owner) == 0;
}

/* Takes the port for owner: 0, or a BH_ECONFLICT error naming the holder. */
static int bhn_expose_claim(int port, const char *owner, struct bh_err *err)
{
    char dir[PATH_MAX], path[PATH_MAX + 16], who[256];
    bhn_expose_dir(dir, sizeof(dir));
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "mkdir %s: %s", dir, strerror(errno));
    snprintf(path, sizeof(path), "%s/%d", dir, port);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        if (bhn_expose_owner(path, owner, who, sizeof(who)) == 1)
            return 0; /* attached again (re-adoption): still ours */
        return bhn_host->err_set(bhn_handle, err, BH_ECONFLICT,
                                 "host port %d is already published (%s)", port, who);
    }
    if (fd < 0)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "create %s: %s", path, strerror(errno));
    size_t len = strlen(owner);
    int ok = write(fd, owner, len) == (ssize_t)len && write(fd, "\n", 1) == 1;
    close(fd);
    if (!ok) {
        unlink(path);
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "write %s: %s", path, strerror(errno));
    }
    return 0;
}

static int bhn_expose_one(const struct bhn_bridge *b, const char *owner, const char *ip,
                          const cJSON *e, struct bh_err *err)
{
    const cJSON *host = cJSON_GetObjectItemCaseSensitive(e, "host");
    const cJSON *guest = cJSON_GetObjectItemCaseSensitive(e, "guest");
    if (!cJSON_IsNumber(host))
        return 0;
    int hp = host->valueint, gp = cJSON_IsNumber(guest) ? guest->valueint : 0;
    if (hp < 1 || hp > 65535 || gp < 1 || gp > 65535)
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL, "expose: ports must be 1..65535");
    if (bhn_expose_claim(hp, owner, err) < 0)
        return -1;
    char nft[256];
    snprintf(nft, sizeof(nft), "add element inet %s expose { %d : %s . %d }\n", b->table, hp, ip,
             gp);
    return bhn_nft_run(b->nft, nft, err);
}

int bhn_expose_publish(const struct bhn_bridge *b, const struct bh_net_request *req, const char *ip,
                       struct bh_err *err)
{
    cJSON *net = cJSON_Parse(req->network_json ? req->network_json : "{}");
    char owner[128];
    snprintf(owner, sizeof(owner), "%s %s", req->instance_id, b->table);
    const cJSON *e;
    int rc = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(net, "expose")) {
        if ((rc = bhn_expose_one(b, owner, ip, e, err)) < 0)
            break;
    }
    cJSON_Delete(net);
    if (rc < 0)
        bhn_expose_unpublish(b, req->instance_id);
    return rc;
}

void bhn_expose_unpublish(const struct bhn_bridge *b, const char *id)
{
    char dir[PATH_MAX], path[PATH_MAX + 300], owner[128], who[256];
    bhn_expose_dir(dir, sizeof(dir));
    snprintf(owner, sizeof(owner), "%s %s", id, b->table);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int port = atoi(de->d_name);
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (port < 1 || bhn_expose_owner(path, owner, who, sizeof(who)) != 1)
            continue;
        /* Absent already (a table rebuilt since) is fine: the error is only logged. */
        char nft[256];
        snprintf(nft, sizeof(nft), "delete element inet %s expose { %d }\n", b->table, port);
        struct bh_err ignored;
        if (bhn_nft_run(b->nft, nft, &ignored) < 0)
            bhn_host->log(bhn_handle, BH_LOG_DEBUG, "unpublish port %d: %s", port, ignored.msg);
        unlink(path);
    }
    closedir(d);
}
