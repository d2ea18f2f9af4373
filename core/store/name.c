#include "name.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "mem.h"

int bh_name_label_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (!len || len > 63 || name[0] == '-' || name[len - 1] == '-')
        return 0;
    return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-") == len;
}

static int name_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A Kubernetes label value, since the ID becomes the boilerhouse.dev/tenant label. */
int bh_name_tenant_valid(const char *id)
{
    size_t len = id ? strlen(id) : 0;
    if (!len || len > 63 || !name_alnum(id[0]) || !name_alnum(id[len - 1]))
        return 0;
    return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

/* SHA-256, fetched once: an implicit fetch per digest (EVP_sha256) was most of a name's cost,
 * and a pool claim names its pair several times. */
static EVP_MD *name_sha256;
static pthread_once_t name_sha256_once = PTHREAD_ONCE_INIT;

static void name_fetch_sha256(void)
{
    name_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

char *bh_name_pair(const char *tenant, const char *workload)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    bh_autofree char *pair = bh_xasprintf("%s\n%s", tenant, workload);
    pthread_once(&name_sha256_once, name_fetch_sha256);
    EVP_Digest(pair, strlen(pair), md, &mdlen, name_sha256 ? name_sha256 : EVP_sha256(), NULL);
    /* Readable part: the tenant lower-cased with anything outside [a-z0-9-] as '-'. The 128-bit
     * hash keeps names unique (two pairs meeting on one name would share an instance and a
     * snapshot); whoever reads a claim or snapshot by name still checks its spec. */
    char readable[9];
    size_t n = 0;
    for (const char *p = tenant; *p && n < sizeof(readable) - 1; p++) {
        char c = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
        readable[n++] = ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) ? c : '-';
    }
    readable[n] = '\0';
    char hash[33];
    for (int i = 0; i < 16; i++)
        snprintf(hash + 2 * i, 3, "%02x", md[i]);
    bh_autofree char *wl = bh_xstrndup(workload, 20); /* 20 + 1 + 8 + 1 + 32 <= 63 */
    return bh_xasprintf("%s-%s-%s", wl, readable, hash);
}

/* The first 8 bytes of SHA-256("tenant\nworkload") in hex. */
static void name_pair_hash(const char *tenant, const char *workload, char out[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    bh_autofree char *pair = bh_xasprintf("%s\n%s", tenant, workload);
    EVP_Digest(pair, strlen(pair), md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

char *bh_name_claim(const char *tenant, const char *workload)
{
    /* formatted before strlen: UBSan's null check on strlen's argument would otherwise give
     * GCC a path with tenant NULL and a -Wformat-overflow error */
    char *plain = bh_xasprintf("claim-%s-%s", tenant, workload);
    size_t tlen = strlen(tenant);
    if (tlen && strspn(tenant, "abcdefghijklmnopqrstuvwxyz0123456789") == tlen &&
        bh_name_label_valid(plain))
        return plain;
    free(plain);
    char lower[17], hash[17]; /* 6 + 16 + 1 + 22 + 1 + 16 = 62 */
    size_t n = 0;
    for (const char *p = tenant; *p && n < sizeof(lower) - 1; p++) {
        char c = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
        lower[n++] = ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) ? c : '-';
    }
    lower[n] = '\0';
    name_pair_hash(tenant, workload, hash);
    bh_autofree char *wl = bh_xstrndup(workload, 22);
    char *name = bh_xasprintf("claim-%s-%s-%s", lower, wl, hash);
    /* a DNS label has no "--" rule, but may not end in '-': the hash never does */
    return name;
}

int bh_name_is_pair(const cJSON *obj, const char *tenant, const char *workload)
{
    const char *t = bh_json_str(obj, "spec.tenantId");
    const char *w = bh_json_str(obj, "spec.workloadRef");
    return t && w && strcmp(t, tenant) == 0 && strcmp(w, workload) == 0;
}
