/* Network mode `restricted`: the instance is bridged like `unrestricted` (own bridge and
 * subnet), but reaches nothing except the egress engine on its gateway (egress.h):
 *  - TCP 80 and 443 to anywhere are DNATed to the transparent HTTP / TLS ports, and DNS
 *    (UDP+TCP 53) to the DNS filter; the explicit proxy port is allowed and advertised in
 *    HTTP_PROXY and friends;
 *  - everything else arriving from the bridge, locally or forwarded, is dropped; nothing new
 *    is forwarded into the bridge; ports are isolated; spoofed sources are dropped at the
 *    port (common/bridge.h), so the per-source-address policy cannot be borrowed.
 * The policy (allowlist, credentials with resolved secrets) is installed at attach, replaced
 * at bind_tenant (tenant secrets) and cleared at detach. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/bridge.h"
#include "egress.h"

#define RS_NAME "restricted"
#define RS_MAX_HEADERS 64

struct rs_state {
    struct bhn_bridge b;
    int explicit_port, http_port, tls_port, dns_port;
    struct egress *eg;
};

/* ---- nftables ---------------------------------------------------------------------------- */

static int rs_tables(const struct rs_state *s, struct bh_err *err)
{
    char body[4096];
    const char *br = s->b.bridge, *gw = s->b.gateway;
    snprintf(body, sizeof(body),
             "  chain prerouting {\n"
             "    type nat hook prerouting priority dstnat; policy accept;\n"
             "    iifname \"%s\" tcp dport 80 dnat ip to %s:%d\n"
             "    iifname \"%s\" tcp dport 443 dnat ip to %s:%d\n"
             "    iifname \"%s\" meta l4proto { tcp, udp } th dport 53 dnat ip to %s:%d\n  }\n"
             "  chain input {\n"
             "    type filter hook input priority filter - 10; policy accept;\n"
             "    iifname \"%s\" ct state established,related accept\n"
             "    iifname \"%s\" ip daddr %s tcp dport { %d, %d, %d, %d } accept\n"
             "    iifname \"%s\" ip daddr %s udp dport %d accept\n"
             "    iifname \"%s\" drop\n  }\n"
             "  chain forward {\n"
             "    type filter hook forward priority filter - 10; policy accept;\n"
             "    ct status dnat ct direction reply iifname \"%s\" accept\n"
             "    ct status dnat oifname \"%s\" accept\n"
             "    iifname \"%s\" drop\n"
             "    oifname \"%s\" ct state established,related accept\n"
             "    oifname \"%s\" drop\n  }\n",
             br, gw, s->http_port, br, gw, s->tls_port, br, gw, s->dns_port, br, br, gw,
             s->explicit_port, s->http_port, s->tls_port, s->dns_port, br, gw, s->dns_port, br, br,
             br, br, br, br);
    return bhn_tables_apply(&s->b, body, err);
}

/* ---- init -------------------------------------------------------------------------------- */

static int rs_port(const char *key, int *out, struct bh_err *err)
{
    long long v = bhn_host->config_int(bhn_handle, key);
    if (v < 1 || v > 65535)
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL, "%s %lld is outside 1..65535", key, v);
    *out = (int)v;
    return 0;
}

static const char *rs_opt(const char *key)
{
    const char *v = bhn_host->config_string(bhn_handle, key);
    return v && v[0] ? v : NULL;
}

static int rs_start_engine(struct rs_state *s, struct bh_err *err)
{
    char ca_dir[PATH_MAX + 8];
    snprintf(ca_dir, sizeof(ca_dir), "%s/ca", s->b.dir);
    struct egress_config ec = {
        .listen_ip = s->b.gateway,
        .explicit_port = s->explicit_port,
        .http_port = s->http_port,
        .tls_port = s->tls_port,
        .dns_port = s->dns_port,
        .ca_dir = ca_dir,
        .trust_bundle = rs_opt("trust_bundle"),
        .hosts_file = rs_opt("hosts_file"),
        .host = bhn_host,
        .handle = bhn_handle,
    };
    return egress_start(&ec, &s->eg, err);
}

static int rs_configure(struct rs_state *s, struct bh_err *err)
{
    if (bhn_configure(&s->b, RS_NAME, err) < 0 ||
        rs_port("explicit_port", &s->explicit_port, err) < 0 ||
        rs_port("http_port", &s->http_port, err) < 0 ||
        rs_port("tls_port", &s->tls_port, err) < 0 || rs_port("dns_port", &s->dns_port, err) < 0)
        return -1;
    return 0;
}

static int rs_init(struct bh_plugin_handle *h, void **state, struct bh_err *err)
{
    bhn_handle = h;
    struct rs_state *s = calloc(1, sizeof(*s));
    if (!s)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "out of memory");
    /* The table goes in before the engine listens: no window with the bridge unfiltered. */
    if (rs_configure(s, err) < 0 || bhn_bridge_up(&s->b, err) < 0 || rs_tables(s, err) < 0 ||
        rs_start_engine(s, err) < 0) {
        bhn_close(&s->b);
        free(s);
        return -1;
    }
    bhn_host->log(bhn_handle, BH_LOG_INFO, "bridge %s up, egress on %s (proxy %d), table inet %s",
                  s->b.bridge, s->b.gateway, s->explicit_port, s->b.table);
    *state = s;
    return 0;
}

static void rs_fini(void *state)
{
    struct rs_state *s = state;
    if (s && s->eg)
        egress_stop(s->eg);
    if (s)
        bhn_close(&s->b);
    free(s);
}

/* ---- policy ------------------------------------------------------------------------------ */

/* A policy built from spec.network: borrowed strings from the parsed JSON, secret values
 * owned by the host (released through host->free by rs_policy_free). */
struct rs_policy {
    cJSON *json;
    const char **allow;
    struct egress_credential *creds;
    struct egress_header *headers;
    char **secrets;
    size_t n_secrets;
    struct egress_policy p;
};

static void rs_policy_free(struct rs_policy *rp)
{
    for (size_t i = 0; i < rp->n_secrets; i++)
        bhn_host->free(bhn_handle, rp->secrets[i]); /* wipes */
    free(rp->secrets);
    free(rp->headers);
    free(rp->creds);
    free(rp->allow);
    cJSON_Delete(rp->json);
}

static const char *rs_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Resolves one header value: literal, secretKeyRef, or (with a tenant) tenantSecretKeyRef.
 * Returns 1 with *value set, 0 if it is a tenant secret and there is no tenant yet. */
static int rs_header_value(struct rs_policy *rp, const cJSON *h, const char *tenant,
                           const char **value, struct bh_err *err)
{
    *value = rs_str(h, "value");
    if (*value)
        return 1;
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(h, "valueFrom");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(from, "secretKeyRef");
    const char *owner = NULL;
    if (!ref) {
        ref = cJSON_GetObjectItemCaseSensitive(from, "tenantSecretKeyRef");
        if (!ref)
            return bhn_host->err_set(bhn_handle, err, BH_EINVAL, "header %s: no value or valueFrom",
                                     rs_str(h, "name"));
        if (!tenant)
            return 0;
        owner = tenant;
    }
    const char *name = rs_str(ref, "name"), *key = rs_str(ref, "key");
    if (!name || !key)
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL,
                                 "header %s: secret ref needs name and key", rs_str(h, "name"));
    if (!BH_HAS_OP(bhn_host, struct bh_host_api, secret_get))
        return bhn_host->err_set(bhn_handle, err, BH_EUNAVAIL, "the host has no secret store");
    char *secret = NULL;
    if (bhn_host->secret_get(bhn_handle, name, key, owner, &secret, err) < 0)
        return -1;
    rp->secrets[rp->n_secrets++] = secret;
    *value = secret;
    return 1;
}

static int rs_credential(struct rs_policy *rp, const cJSON *c, size_t *nh, const char *tenant,
                         struct bh_err *err)
{
    struct egress_credential *cred = &rp->creds[rp->p.n_credentials];
    cred->domain = rs_str(c, "domain");
    cred->headers = &rp->headers[*nh];
    if (!cred->domain)
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL, "credentials: an entry has no domain");
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(c, "headers")) {
        const char *value;
        int rc = rs_header_value(rp, h, tenant, &value, err);
        if (rc < 0)
            return -1;
        if (rc == 0 || !rs_str(h, "name"))
            continue;
        rp->headers[*nh] = (struct egress_header){.name = rs_str(h, "name"), .value = value};
        (*nh)++;
        cred->n_headers++;
    }
    rp->p.n_credentials++;
    return 0;
}

static size_t rs_count_headers(const cJSON *creds)
{
    size_t n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, creds)
        n += (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(c, "headers"));
    return n;
}

static int rs_policy_build(struct rs_policy *rp, const struct bh_net_request *req,
                           const char *tenant, struct bh_err *err)
{
    memset(rp, 0, sizeof(*rp));
    rp->json = cJSON_Parse(req->network_json ? req->network_json : "{}");
    if (!rp->json)
        return bhn_host->err_set(bhn_handle, err, BH_EINVAL, "spec.network is not JSON");
    const cJSON *allow = cJSON_GetObjectItemCaseSensitive(rp->json, "allowlist");
    const cJSON *creds = cJSON_GetObjectItemCaseSensitive(rp->json, "credentials");
    size_t n_allow = (size_t)cJSON_GetArraySize(allow), n_creds = (size_t)cJSON_GetArraySize(creds);
    size_t n_headers = rs_count_headers(creds);
    rp->allow = calloc(n_allow + 1, sizeof(*rp->allow));
    rp->creds = calloc(n_creds + 1, sizeof(*rp->creds));
    rp->headers = calloc(n_headers + 1, sizeof(*rp->headers));
    rp->secrets = calloc(n_headers + 1, sizeof(*rp->secrets));
    if (!rp->allow || !rp->creds || !rp->headers || !rp->secrets)
        return bhn_host->err_set(bhn_handle, err, BH_EIO, "out of memory");
    rp->p = (struct egress_policy){
        .workload = req->workload, .allowlist = rp->allow, .credentials = rp->creds};
    const cJSON *a;
    cJSON_ArrayForEach(a, allow) {
        if (!cJSON_IsString(a))
            return bhn_host->err_set(bhn_handle, err, BH_EINVAL,
                                     "allowlist: entries must be strings");
        rp->allow[rp->p.n_allow++] = a->valuestring;
    }
    size_t nh = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, creds) {
        if (rs_credential(rp, c, &nh, tenant, err) < 0)
            return -1;
    }
    return 0;
}

static int rs_policy_install(struct rs_state *s, const struct bh_net_request *req, const char *ip,
                             struct bh_err *err)
{
    struct rs_policy rp;
    int rc = rs_policy_build(&rp, req, req->tenant_id, err);
    if (rc == 0)
        rc = egress_set_policy(s->eg, ip, &rp.p, err);
    rs_policy_free(&rp);
    return rc;
}

static int rs_has_credentials(const char *network_json)
{
    cJSON *j = cJSON_Parse(network_json ? network_json : "{}");
    int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "credentials"));
    cJSON_Delete(j);
    return n > 0;
}

/* ---- ops --------------------------------------------------------------------------------- */

static int rs_prepare(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                      struct bh_err *err)
{
    struct rs_state *s = state;
    char url[64];
    snprintf(url, sizeof(url), "http://%s:%d", s->b.gateway, s->explicit_port);
    res->flags = BH_NET_NEW_NETNS;
    snprintf(res->env, sizeof(res->env),
             "HTTP_PROXY=%s\nHTTPS_PROXY=%s\nhttp_proxy=%s\nhttps_proxy=%s\n"
             "NO_PROXY=localhost,127.0.0.1\nno_proxy=localhost,127.0.0.1\n",
             url, url, url, url);
    if (!BH_HAS_FIELD(res, struct bh_net_result, ca_pem_path))
        return 0;
    res->ca_pem_path[0] = '\0';
    /* libc resolution goes to the DNS filter, so clients that ignore HTTP_PROXY (Node's
     * fetch) resolve allowlisted names and reach them through the transparent ports. */
    if (BH_HAS_FIELD(res, struct bh_net_result, nameservers)) {
        res->flags |= BH_NET_RESOLVER;
        snprintf(res->nameservers, sizeof(res->nameservers), "%s", s->b.gateway);
    }
    if (!rs_has_credentials(req->network_json))
        return 0;
    const char *ca = egress_ca_cert(s->eg, req->workload, err);
    if (!ca)
        return -1;
    snprintf(res->ca_pem_path, sizeof(res->ca_pem_path), "%s", ca);
    return 0;
}

static void rs_clear(const char *ip, void *ctx)
{
    struct rs_state *s = ctx;
    egress_clear_policy(s->eg, ip);
}

static int rs_detach(void *state, const struct bh_net_request *req, struct bh_err *err)
{
    struct rs_state *s = state;
    return bhn_detach(&s->b, req->instance_id, rs_clear, s, err);
}

static int rs_attach(void *state, const struct bh_net_request *req, struct bh_net_result *res,
                     struct bh_err *err)
{
    struct rs_state *s = state;
    struct bhn_names n;
    if (bhn_attach(&s->b, req, &n, err) < 0)
        return -1;
    if (rs_policy_install(s, req, n.ip, err) < 0) {
        struct bh_err ignored;
        rs_detach(state, req, &ignored);
        return -1;
    }
    snprintf(res->host, sizeof(res->host), "%s", n.ip);
    bhn_host->log(bhn_handle, BH_LOG_DEBUG, "%s attached at %s via %s", req->instance_id, n.ip,
                  n.host_if);
    return 0;
}

/* The instance now serves req->tenant_id: re-resolve its tenant secrets, replace the policy. */
static int rs_bind_tenant(void *state, const struct bh_net_request *req, struct bh_err *err)
{
    struct rs_state *s = state;
    uint32_t addr;
    if (bhn_check_id(req->instance_id, err) < 0)
        return -1;
    int found = bhn_lease_lookup(s->b.leases, req->instance_id, &addr, err);
    if (found <= 0)
        return found < 0 ? -1
                         : bhn_host->err_set(bhn_handle, err, BH_ENOTFOUND, "bind %s: not attached",
                                             req->instance_id);
    char ip[16];
    bhn_ip_text(addr, ip);
    return rs_policy_install(s, req, ip, err);
}

static const struct bh_config_field rs_schema[] = {
    {"bridge", BH_CFG_STRING, 0, "bhr0", "host bridge the restricted instances join"},
    {"subnet", BH_CFG_STRING, 0, "10.212.0.0/16", "instance addresses; the bridge gets .1"},
    {"mtu", BH_CFG_INT, 0, "1500", "MTU of the veth pairs"},
    {"explicit_port", BH_CFG_INT, 0, "3128", "egress proxy port (HTTP_PROXY), on the gateway"},
    {"http_port", BH_CFG_INT, 0, "3129", "transparent HTTP port (TCP 80 is redirected here)"},
    {"tls_port", BH_CFG_INT, 0, "3130", "transparent TLS port (TCP 443 is redirected here)"},
    {"dns_port", BH_CFG_INT, 0, "53", "DNS filter port (UDP/TCP 53 are redirected here)"},
    {"trust_bundle", BH_CFG_STRING, 0, "", "PEM bundle to verify upstreams; empty: system"},
    {"hosts_file", BH_CFG_STRING, 0, "", "\"ip name\" file consulted before DNS (tests)"},
};

/* The keys of spec.network this access reads. */
static const struct bh_config_field rs_serves[] = {
    {"expose", BH_CFG_LIST, 0, NULL, "host ports published to the instance"},
    {"allowlist", BH_CFG_LIST, 0, NULL, "hosts the instance may reach through the egress proxy"},
    {"credentials", BH_CFG_LIST, 0, NULL, "headers the proxy adds per domain"},
};

static int rs_stats(void *state, char *json, size_t cap)
{
    struct rs_state *s = state;
    return s->eg ? egress_stats(s->eg, json, cap) : -1;
}

static const struct bh_network_ops rs_ops = {
    .size = sizeof(struct bh_network_ops),
    .init = rs_init,
    .fini = rs_fini,
    .prepare = rs_prepare,
    .attach = rs_attach,
    .detach = rs_detach,
    .bind_tenant = rs_bind_tenant,
    .stats = rs_stats,
};

static const struct bh_plugin_info rs_info = {
    .size = sizeof(struct bh_plugin_info),
    .abi_major = BH_PLUGIN_ABI_MAJOR,
    .abi_minor = BH_PLUGIN_ABI_MINOR,
    .build_sig = BH_PLUGIN_BUILD_SIG,
    .kind = BH_PLUGIN_NETWORK,
    /* Leases are claimed by exclusive file creation and the egress engine locks its policy
     * table: calls may overlap, as they did under ABI 1. */
    .flags = BH_PLUGIN_THREADSAFE,
    .name = RS_NAME,
    .version = "0.1.0",
    .field_size = sizeof(struct bh_config_field),
    .config_schema = rs_schema,
    .n_config = sizeof(rs_schema) / sizeof(rs_schema[0]),
    .serves = RS_NAME,
    .serves_schema = rs_serves,
    .n_serves_schema = sizeof(rs_serves) / sizeof(rs_serves[0]),
    .ops = &rs_ops,
};

BH_PLUGIN_EXPORT const struct bh_plugin_info *bh_plugin_entry(const struct bh_host_api *host)
{
    bhn_host = host;
    return &rs_info;
}
