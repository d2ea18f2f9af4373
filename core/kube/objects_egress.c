/* The egress parts of a `restricted` Pod: the local mode's egress engine runs as a sidecar
 * (DNS filter, allowlist by Host/SNI, credential injection); an init container redirects the
 * Pod's outbound TCP 80/443 and DNS to it and drops the rest; the workload's CA lives in a
 * Secret the sidecar alone mounts (the main container sees the certificate only). */
#include "objects_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "json.h"
#include "mem.h"
#include "name.h"

#define EG_KEY_DIR "/etc/boilerhouse/egress-ca-key"
/* The agent token Secret again, as a volume of the sidecar alone, readable by its uid. */
#define EG_TOKEN_VOLUME "egress-token"
#define EG_TOKEN_DIR "/etc/boilerhouse/egress-token"
#define EG_CRED_ENV "BOILERHOUSE_EGRESS_CRED_"

/* Loaded by `nft` in the init container (NET_ADMIN there only). The sidecar's uid is the
 * one exempt from the redirect and the drop; the workload cannot change the rules (no
 * NET_ADMIN) and replies to inbound connections pass as established. `ct status dnat`: a
 * redirected packet goes out on lo, but the output hook still names the device of its first
 * route (eth0), so `oifname "lo"` alone would drop what was just sent to the sidecar. */
#define EG_STR(x) #x
#define EG_XSTR(x) EG_STR(x)
// clang-format off
static const char eg_rules[] =
    "table inet boilerhouse_egress {\n"
    "  chain nat_out {\n"
    "    type nat hook output priority -100; policy accept;\n"
    "    meta skuid " EG_XSTR(BH_KUBE_PROXY_UID) " return\n"
    "    oifname \"lo\" return\n"
    "    tcp dport 80 redirect to :" EG_XSTR(BH_KUBE_PROXY_HTTP_PORT) "\n"
    "    tcp dport 443 redirect to :" EG_XSTR(BH_KUBE_PROXY_TLS_PORT) "\n"
    "    meta l4proto { tcp, udp } th dport 53 redirect to :" EG_XSTR(BH_KUBE_PROXY_DNS_PORT) "\n"
    "  }\n"
    "  chain filter_out {\n"
    "    type filter hook output priority 0; policy drop;\n"
    "    oifname \"lo\" accept\n"
    "    ct status dnat accept\n"
    "    ct state established,related accept\n"
    "    ip daddr 169.254.0.0/16 drop\n"
    "    meta skuid " EG_XSTR(BH_KUBE_PROXY_UID) " accept\n"
    "  }\n"
    "}\n";
// clang-format on

const char *bh_kube_redirect_rules(void)
{
    return eg_rules;
}

/* ---- the sidecar's configuration --------------------------------------------------------- */

/* A Secret name (DNS-1123 subdomain) and a key ([-._a-zA-Z0-9]+), as the API server wants. */
static int eg_ref_check(const cJSON *ref, const char *path, struct bh_err *err)
{
    const char *name = bh_json_str(ref, "name"), *key = bh_json_str(ref, "key");
    size_t nlen = name ? strlen(name) : 0, klen = key ? strlen(key) : 0;
    if (!nlen || nlen > 253 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-.") != nlen ||
        name[0] == '-' || name[0] == '.' || name[nlen - 1] == '-' || name[nlen - 1] == '.')
        return bh_err_set(err, BH_EINVAL, "%s.name: must be a Kubernetes Secret name", path);
    if (!klen || klen > 253 ||
        strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") != klen)
        return bh_err_set(err, BH_EINVAL, "%s.key: must be a Kubernetes Secret key", path);
    return 0;
}

/* One header of the sidecar's config: a literal value stays, a secretKeyRef becomes an env
 * variable of the sidecar only (the workload never holds the secret), a tenant's secret is
 * resolved by the daemon when the instance is claimed and stays a reference here. */
static int eg_header(cJSON *out, cJSON *env, const cJSON *h, const char *path, int *n_cred,
                     struct bh_err *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToArray(out, o);
    cJSON_AddStringToObject(o, "name", bh_json_str(h, "name"));
    const cJSON *ref = bh_json_get(h, "valueFrom.secretKeyRef");
    const cJSON *tref = bh_json_get(h, "valueFrom.tenantSecretKeyRef");
    if (!ref && !tref) {
        const char *v = bh_json_str(h, "value");
        cJSON_AddStringToObject(o, "value", v ? v : "");
        return 0;
    }
    if (tref) {
        cJSON_AddItemToObject(o, "tenantSecretKeyRef", cJSON_Duplicate(tref, 1));
        return 0;
    }
    bh_autofree char *rpath = bh_xasprintf("%s.valueFrom.secretKeyRef", path);
    if (eg_ref_check(ref, rpath, err) < 0)
        return -1;
    char var[48];
    snprintf(var, sizeof(var), EG_CRED_ENV "%d", (*n_cred)++);
    cJSON_AddStringToObject(o, "env", var);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", var);
    cJSON *sk = cJSON_AddObjectToObject(cJSON_AddObjectToObject(e, "valueFrom"), "secretKeyRef");
    cJSON_AddStringToObject(sk, "name", bh_json_str(ref, "name"));
    cJSON_AddStringToObject(sk, "key", bh_json_str(ref, "key"));
    cJSON_AddItemToArray(env, e);
    return 0;
}

static int eg_credentials(cJSON *config, cJSON *env, const cJSON *workload, struct bh_err *err)
{
    cJSON *creds = cJSON_AddArrayToObject(config, "credentials");
    int i = 0, n_cred = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, bh_json_get(workload, "spec.network.credentials")) {
        cJSON *oc = cJSON_CreateObject();
        cJSON_AddItemToArray(creds, oc);
        cJSON_AddStringToObject(oc, "domain", bh_json_str(c, "domain"));
        cJSON *headers = cJSON_AddArrayToObject(oc, "headers");
        int j = 0;
        const cJSON *h;
        cJSON_ArrayForEach(h, cJSON_GetObjectItem(c, "headers")) {
            bh_autofree char *path =
                bh_xasprintf("spec.network.credentials[%d].headers[%d]", i, j++);
            if (eg_header(headers, env, h, path, &n_cred, err) < 0)
                return -1;
        }
        i++;
    }
    return 0;
}

int bh_kube_tenant_headers(const cJSON *workload)
{
    const char *access = bh_json_str(workload, "spec.network.access");
    if (!access || strcmp(access, "restricted") != 0)
        return 0;
    int n = 0;
    const cJSON *c, *h;
    cJSON_ArrayForEach(c, bh_json_get(workload, "spec.network.credentials")) {
        cJSON_ArrayForEach(h, cJSON_GetObjectItem(c, "headers"))
            n += bh_json_get(h, "valueFrom.tenantSecretKeyRef") != NULL;
    }
    return n;
}

/* BOILERHOUSE_EGRESS_CONFIG: what the sidecar enforces, as JSON (the sidecar's parser,
 * plugins/network/restricted/sidecar/sidecar_config.c, rejects fields it does not know). The
 * workload's name selects the CA and names the sidecar's log lines. */
static int eg_config_env(cJSON *env, const cJSON *workload, struct bh_err *err)
{
    cJSON *config = cJSON_CreateObject();
    cJSON_AddStringToObject(config, "workload", bh_json_str(workload, "metadata.name"));
    const cJSON *allow = bh_json_get(workload, "spec.network.allowlist");
    cJSON_AddItemToObject(config, "allowlist",
                          allow ? cJSON_Duplicate(allow, 1) : cJSON_CreateArray());
    int rc = eg_credentials(config, env, workload, err);
    cJSON *ports = cJSON_AddObjectToObject(config, "ports");
    cJSON_AddNumberToObject(ports, "http", BH_KUBE_PROXY_HTTP_PORT);
    cJSON_AddNumberToObject(ports, "tls", BH_KUBE_PROXY_TLS_PORT);
    cJSON_AddNumberToObject(ports, "dns", BH_KUBE_PROXY_DNS_PORT);
    cJSON_AddStringToObject(config, "caDir", EG_KEY_DIR);
    if (bh_kube_tenant_headers(workload) > 0) {
        cJSON *ctl = cJSON_AddObjectToObject(config, "control");
        cJSON_AddNumberToObject(ctl, "port", BH_KUBE_PROXY_CONTROL_PORT);
        cJSON_AddStringToObject(ctl, "tokenFile", EG_TOKEN_DIR "/token");
    }
    bh_autofree char *text = bh_json_print(config);
    cJSON_Delete(config);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", "BOILERHOUSE_EGRESS_CONFIG");
    cJSON_AddStringToObject(e, "value", text);
    cJSON_InsertItemInArray(env, 0, e);
    return rc;
}

/* ---- containers -------------------------------------------------------------------------- */

/* The CA Secret as two volumes: whole (the sidecar) and the certificate alone (the main
 * container). Mode 0444: the sidecar runs as a non-root uid and the files are root's; each
 * volume is visible only in the containers that mount it. */
static void eg_volumes(cJSON *spec, const char *secret)
{
    cJSON *volumes = cJSON_GetObjectItem(spec, "volumes");
    for (int cert_only = 0; cert_only < 2; cert_only++) {
        cJSON *v = cJSON_CreateObject();
        cJSON_AddStringToObject(v, "name", cert_only ? "egress-ca-cert" : "egress-ca-key");
        cJSON *s = cJSON_AddObjectToObject(v, "secret");
        cJSON_AddStringToObject(s, "secretName", secret);
        cJSON_AddNumberToObject(s, "defaultMode", 0444);
        if (cert_only) {
            cJSON *item = cJSON_CreateObject();
            cJSON_AddStringToObject(item, "key", "tls.crt");
            cJSON_AddStringToObject(item, "path", "ca.crt");
            cJSON_AddItemToArray(cJSON_AddArrayToObject(s, "items"), item);
        }
        cJSON_AddItemToArray(volumes, v);
    }
}

/* The control port of a sidecar that takes a tenant's values, and its token: the agent
 * token Secret as a volume of the sidecar alone (0444 for its uid; the workload container
 * does not mount it, so it cannot authenticate to the port it shares a namespace with). */
static void eg_control(cJSON *spec, cJSON *c)
{
    cJSON *port = cJSON_CreateObject();
    cJSON_AddStringToObject(port, "name", "bh-egress-ctl");
    cJSON_AddNumberToObject(port, "containerPort", BH_KUBE_PROXY_CONTROL_PORT);
    cJSON_AddStringToObject(port, "protocol", "TCP");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(c, "ports"), port);
    cJSON *v = cJSON_CreateObject();
    cJSON_AddStringToObject(v, "name", EG_TOKEN_VOLUME);
    cJSON *s = cJSON_AddObjectToObject(v, "secret");
    cJSON_AddStringToObject(s, "secretName", BH_KUBE_AGENT_SECRET);
    cJSON_AddNumberToObject(s, "defaultMode", 0444);
    cJSON_AddItemToArray(cJSON_GetObjectItem(spec, "volumes"), v);
    kube_mount(c, EG_TOKEN_VOLUME, EG_TOKEN_DIR, NULL, 1);
}

static int eg_sidecar(cJSON *spec, const cJSON *workload, const struct bh_kube_opts *o,
                      struct bh_err *err)
{
    static const char *const cmd[] = {"boilerhouse", "egress-proxy", NULL};
    cJSON *c = kube_container("egress-proxy", o->proxy_image, cmd);
    cJSON_AddItemToArray(cJSON_GetObjectItem(spec, "containers"), c);
    if (eg_config_env(cJSON_AddArrayToObject(c, "env"), workload, err) < 0)
        return -1;
    cJSON_AddItemToObject(c, "resources", kube_resources("100m", "64Mi"));
    cJSON_AddItemToObject(c, "securityContext", kube_security(BH_KUBE_PROXY_UID, NULL));
    kube_mount(c, "egress-ca-key", EG_KEY_DIR, NULL, 1);
    if (bh_kube_tenant_headers(workload) > 0)
        eg_control(spec, c);
    return 0;
}

static void eg_init(cJSON *spec, const struct bh_kube_opts *o)
{
    static const char *const cmd[] = {"nft", eg_rules, NULL};
    cJSON *c = kube_container("egress-init", o->proxy_image, cmd);
    cJSON_AddItemToObject(c, "resources", kube_resources("50m", "32Mi"));
    static const char *const net_admin[] = {"NET_ADMIN", NULL};
    cJSON_AddItemToObject(c, "securityContext", kube_security(0, net_admin));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(spec, "initContainers"), c);
}

/* The main container trusts the CA: Node adds it to its roots; others read the file. */
static void eg_main(cJSON *main)
{
    kube_mount(main, "egress-ca-cert", BH_KUBE_CA_DIR, NULL, 1);
    cJSON *env = cJSON_GetObjectItem(main, "env");
    if (!env)
        env = cJSON_AddArrayToObject(main, "env");
    static const char *const vars[] = {"NODE_EXTRA_CA_CERTS", "BOILERHOUSE_EGRESS_CA"};
    for (size_t i = 0; i < 2; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", vars[i]);
        cJSON_AddStringToObject(e, "value", BH_KUBE_CA_DIR "/ca.crt");
        cJSON_AddItemToArray(env, e);
    }
}

int kube_egress_add(cJSON *spec, cJSON *main, const cJSON *workload, const struct bh_kube_opts *o,
                    struct bh_err *err)
{
    bh_autofree char *secret = bh_kube_ca_secret_name(bh_json_str(workload, "metadata.name"));
    eg_init(spec, o);
    eg_volumes(spec, secret);
    eg_main(main);
    return eg_sidecar(spec, workload, o, err);
}

/* ---- the CA Secret ----------------------------------------------------------------------- */

static int eg_pem_check(const char *pem, const char *what, struct bh_err *err)
{
    if (!pem || strncmp(pem, "-----BEGIN ", 11) != 0 || !strstr(pem, "-----END "))
        return bh_err_set(err, BH_EINVAL, "%s: not PEM text", what);
    return 0;
}

int bh_kube_ca_secret(const cJSON *workload, const char *cert_pem, const char *key_pem,
                      const struct bh_kube_opts *o, cJSON **out, struct bh_err *err)
{
    const char *wl = bh_json_str(workload, "metadata.name");
    if (!bh_name_label_valid(wl))
        return bh_err_set(err, BH_EINVAL, "metadata.name: must be a DNS-1123 label");
    if (eg_pem_check(cert_pem, "CA certificate", err) < 0 ||
        eg_pem_check(key_pem, "CA key", err) < 0)
        return -1;
    bh_autofree char *name = bh_kube_ca_secret_name(wl);
    bh_autofree char *crt = bh_crypto_base64(cert_pem, strlen(cert_pem));
    char *key = bh_crypto_base64(key_pem, strlen(key_pem));
    cJSON *s = kube_object("v1", "Secret", name, o->namespace, wl);
    cJSON_AddStringToObject(s, "type", "kubernetes.io/tls");
    cJSON *data = cJSON_AddObjectToObject(s, "data");
    cJSON_AddStringToObject(data, "tls.crt", crt);
    cJSON_AddStringToObject(data, "tls.key", key);
    bh_crypto_wipe(key, strlen(key));
    free(key);
    *out = s;
    return 0;
}
