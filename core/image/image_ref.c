/* Image references, normalised the way docker does: "busybox" means
 * "docker.io/library/busybox:latest"; a first component with '.', ':' or "localhost" is a
 * registry host. */
#include "image_int.h"

#include <stdlib.h>
#include <string.h>

#include "mem.h"

#define REF_DEFAULT_HOST "docker.io"

static int ref_is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* Repository path: '/'-separated components of [a-z0-9] with single '.', '_' or '-' between
 * alphanumerics; this also keeps empty and ".." components out of anything built from it. */
static int ref_repo_valid(const char *repo)
{
    if (!repo[0] || repo[0] == '/' || repo[strlen(repo) - 1] == '/' || strstr(repo, "//"))
        return 0;
    for (const char *p = repo; *p; p++) {
        if (ref_is_lower_alnum(*p) || *p == '/')
            continue;
        if (!strchr("._-", *p) || p == repo || p[-1] == '/' || !ref_is_lower_alnum(p[1]))
            return 0;
    }
    return 1;
}

static int ref_tag_valid(const char *tag)
{
    size_t n = strlen(tag);
    if (n == 0 || n > 128 || tag[0] == '.' || tag[0] == '-')
        return 0;
    return strspn(tag, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

static int ref_host_valid(const char *host)
{
    size_t n = strlen(host);
    return n > 0 && n < 256 && host[0] != '.' && host[0] != '-' &&
           strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") == n;
}

static int ref_looks_like_host(const char *first, size_t len)
{
    return memchr(first, '.', len) || memchr(first, ':', len) ||
           (len == 9 && memcmp(first, "localhost", 9) == 0);
}

/* Splits "name[:tag]" (after host and digest are gone) into repo and tag. */
static void ref_split_tag(char *name, struct bh_image_ref *out)
{
    char *colon = strrchr(name, ':');
    if (colon && !strchr(colon, '/')) {
        *colon = '\0';
        out->tag = bh_xstrdup(colon + 1);
    }
    out->repo = bh_xstrdup(name);
}

static void ref_split_host(const char *rest, struct bh_image_ref *out, const char **name)
{
    const char *slash = strchr(rest, '/');
    if (slash && ref_looks_like_host(rest, (size_t)(slash - rest))) {
        out->host = bh_xstrndup(rest, (size_t)(slash - rest));
        *name = slash + 1;
        if (strcmp(out->host, "index.docker.io") == 0) {
            free(out->host);
            out->host = bh_xstrdup(REF_DEFAULT_HOST);
        }
        return;
    }
    out->host = bh_xstrdup(REF_DEFAULT_HOST);
    *name = rest;
}

static int ref_validate(const char *in, struct bh_image_ref *r, struct bh_err *err)
{
    if (!ref_host_valid(r->host))
        return bh_err_set(err, BH_EINVAL, "image ref %s: bad registry host", in);
    if (!ref_repo_valid(r->repo))
        return bh_err_set(err, BH_EINVAL, "image ref %s: bad repository name", in);
    if (r->tag && !ref_tag_valid(r->tag))
        return bh_err_set(err, BH_EINVAL, "image ref %s: bad tag", in);
    if (r->digest && !bh_image_digest_valid(r->digest))
        return bh_err_set(err, BH_EINVAL, "image ref %s: bad digest (want sha256:<64 hex>)", in);
    /* The normalised form ("docker.io/library/...:latest") must itself parse. */
    if (strlen(r->host) + strlen(r->repo) + strlen(r->digest ? r->digest : r->tag) + 2 > 1024)
        return bh_err_set(err, BH_EINVAL, "image ref %s: too long once normalised", in);
    return 0;
}

int bh_image_ref_parse(const char *in, struct bh_image_ref *out, struct bh_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!in || !in[0] || strlen(in) > 1024)
        return bh_err_set(err, BH_EINVAL, "image ref is empty or too long");
    bh_autofree char *copy = bh_xstrdup(in);
    char *at = strchr(copy, '@');
    if (at) {
        *at = '\0';
        out->digest = bh_xstrdup(at + 1);
    }
    const char *name;
    ref_split_host(copy, out, &name);
    bh_autofree char *name_copy = bh_xstrdup(name);
    ref_split_tag(name_copy, out);
    if (out->digest) {
        /* A digest pins the content; a tag next to it says nothing more. */
        free(out->tag);
        out->tag = NULL;
    } else if (!out->tag) {
        out->tag = bh_xstrdup("latest");
    }
    if (strcmp(out->host, REF_DEFAULT_HOST) == 0 && !strchr(out->repo, '/')) {
        char *lib = bh_xasprintf("library/%s", out->repo);
        free(out->repo);
        out->repo = lib;
    }
    if (ref_validate(in, out, err) < 0) {
        bh_image_ref_clear(out);
        return -1;
    }
    return 0;
}

void bh_image_ref_clear(struct bh_image_ref *ref)
{
    free(ref->host);
    free(ref->repo);
    free(ref->tag);
    free(ref->digest);
    memset(ref, 0, sizeof(*ref));
}

char *bh_image_ref_format(const struct bh_image_ref *ref)
{
    if (ref->digest)
        return bh_xasprintf("%s/%s@%s", ref->host, ref->repo, ref->digest);
    return bh_xasprintf("%s/%s:%s", ref->host, ref->repo, ref->tag);
}

int bh_image_ref_normalize(const char *in, char **out, struct bh_err *err)
{
    struct bh_image_ref r;
    if (bh_image_ref_parse(in, &r, err) < 0)
        return -1;
    *out = bh_image_ref_format(&r);
    bh_image_ref_clear(&r);
    return 0;
}
