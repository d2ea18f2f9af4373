/* The network objects of an instance: its ClusterIP Service and its NetworkPolicy. */
#include "objects_int.h"

#include <stdio.h>
#include <string.h>

#include "json.h"
#include "mem.h"

/* Cloud metadata endpoints: no mode but `none` reaches less, no mode reaches these. */
#define NET_METADATA_V4 "169.254.0.0/16"
#define NET_METADATA_V6 "fd00:ec2::254/128"

int bh_kube_service(const cJSON *workload, const struct bh_kube_instance *inst,
                    const struct bh_kube_opts *o, cJSON **out, struct bh_err *err)
{
    bh_autofree char *name = NULL;
    *out = NULL;
    if (kube_instance_check(workload, inst, &name, err) < 0)
        return -1;
    const cJSON *expose = bh_json_get(workload, "spec.network.expose");
    if (cJSON_GetArraySize(expose) <= 0)
        return 0;
    cJSON *svc =
        kube_object("v1", "Service", name, o->namespace, bh_json_str(workload, "metadata.name"));
    cJSON_AddStringToObject(cJSON_GetObjectItem(bh_json_get(svc, "metadata"), "labels"),
                            BH_KUBE_LABEL_INSTANCE, name);
    cJSON *spec = cJSON_AddObjectToObject(svc, "spec");
    cJSON_AddStringToObject(spec, "type", "ClusterIP");
    cJSON_AddItemToObject(spec, "selector", kube_label_map(BH_KUBE_LABEL_INSTANCE, name));
    cJSON *ports = cJSON_AddArrayToObject(spec, "ports");
    const cJSON *e;
    cJSON_ArrayForEach(e, expose) {
        char pname[16]; /* an IANA service name: at most 15 characters */
        int guest = (int)bh_json_int(e, "guest", 0);
        snprintf(pname, sizeof(pname), "port-%d", guest);
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", pname);
        cJSON_AddStringToObject(p, "protocol", "TCP");
        cJSON_AddNumberToObject(p, "port", guest);
        cJSON_AddNumberToObject(p, "targetPort", guest);
        cJSON_AddItemToArray(ports, p);
    }
    *out = svc;
    return 0;
}

/* ---- NetworkPolicy ----------------------------------------------------------------------- */

/* "key=value" as a matchLabels object, or NULL when it is not one. */
static cJSON *net_selector(const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return NULL;
    bh_autofree char *key = bh_xstrndup(kv, (size_t)(eq - kv));
    cJSON *sel = cJSON_CreateObject();
    cJSON_AddItemToObject(sel, "matchLabels", kube_label_map(key, eq + 1));
    return sel;
}

/* A peer: Pods matching pod_labels (NULL: any) in the namespace named ns. The namespace is
 * selected by its kubernetes.io/metadata.name label (set by the server from 1.21 on; older
 * clusters need it put on by hand, as deploy/kubernetes/namespace.yaml does). */
static cJSON *net_peer(const char *ns, cJSON *pod_labels)
{
    cJSON *peer = cJSON_CreateObject();
    cJSON *nsel = cJSON_AddObjectToObject(peer, "namespaceSelector");
    cJSON_AddItemToObject(nsel, "matchLabels", kube_label_map("kubernetes.io/metadata.name", ns));
    if (pod_labels)
        cJSON_AddItemToObject(peer, "podSelector", pod_labels);
    return peer;
}

static void net_port(cJSON *ports, const char *proto, int port)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "protocol", proto);
    cJSON_AddNumberToObject(p, "port", port);
    cJSON_AddItemToArray(ports, p);
}

/* Ingress from the operator's Pods only, in every mode: it probes, proxies and snapshots. */
static void net_ingress(cJSON *spec, const struct bh_kube_opts *o)
{
    cJSON *rule = cJSON_CreateObject();
    cJSON *from = cJSON_AddArrayToObject(rule, "from");
    cJSON *op = cJSON_CreateObject();
    cJSON_AddItemToObject(op, "matchLabels",
                          kube_label_map(BH_KUBE_OPERATOR_LABEL, BH_KUBE_OPERATOR_VALUE));
    cJSON_AddItemToArray(from, net_peer(o->operator_namespace, op));
    cJSON_AddItemToArray(cJSON_AddArrayToObject(spec, "ingress"), rule);
}

static int net_dns_rule(cJSON *egress, const struct bh_kube_opts *o, struct bh_err *err)
{
    cJSON *sel = net_selector(o->dns_label);
    if (!sel)
        return bh_err_set(err, BH_EINVAL, "DNS pod label %s: must be key=value", o->dns_label);
    cJSON *rule = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(rule, "to"), net_peer(o->dns_namespace, sel));
    cJSON *ports = cJSON_AddArrayToObject(rule, "ports");
    net_port(ports, "UDP", 53);
    net_port(ports, "TCP", 53);
    cJSON_AddItemToArray(egress, rule);
    return 0;
}

/* {ipBlock: {cidr, except: [excepts...]}} into to; the except array is returned. */
static cJSON *net_block(cJSON *to, const char *cidr, const char *metadata)
{
    cJSON *peer = cJSON_CreateObject();
    cJSON *block = cJSON_AddObjectToObject(peer, "ipBlock");
    cJSON_AddStringToObject(block, "cidr", cidr);
    cJSON *except = cJSON_AddArrayToObject(block, "except");
    cJSON_AddItemToArray(except, cJSON_CreateString(metadata));
    cJSON_AddItemToArray(to, peer);
    return except;
}

static int net_cidr_check(const char *c, struct bh_err *err)
{
    const char *slash = strchr(c, '/');
    if (!slash || slash == c || strspn(c, "0123456789abcdefABCDEF.:/") != strlen(c))
        return bh_err_set(err, BH_EINVAL, "cluster range %s: must be a CIDR", c);
    return 0;
}

int bh_kube_opts_check(const struct bh_kube_opts *o, struct bh_err *err)
{
    for (const char *const *c = o->cluster_cidrs; c && *c; c++)
        if (net_cidr_check(*c, err) < 0)
            return -1;
    cJSON *sel = o->dns_label ? net_selector(o->dns_label) : NULL;
    if (o->dns_label && !sel)
        return bh_err_set(err, BH_EINVAL, "DNS pod label %s: must be key=value", o->dns_label);
    cJSON_Delete(sel);
    return 0;
}

/* The world minus metadata and the cluster's own ranges: one ipBlock per address family. */
static int net_world_rule(cJSON *egress, const struct bh_kube_opts *o, const int *tcp_ports,
                          struct bh_err *err)
{
    cJSON *rule = cJSON_CreateObject();
    cJSON_AddItemToArray(egress, rule);
    cJSON *to = cJSON_AddArrayToObject(rule, "to");
    cJSON *ex4 = net_block(to, "0.0.0.0/0", NET_METADATA_V4);
    cJSON *ex6 = net_block(to, "::/0", NET_METADATA_V6);
    for (const char *const *c = o->cluster_cidrs; *c; c++) {
        if (net_cidr_check(*c, err) < 0)
            return -1;
        cJSON_AddItemToArray(strchr(*c, ':') ? ex6 : ex4, cJSON_CreateString(*c));
    }
    if (tcp_ports) {
        cJSON *ports = cJSON_AddArrayToObject(rule, "ports");
        for (; *tcp_ports; tcp_ports++)
            net_port(ports, "TCP", *tcp_ports);
    }
    return 0;
}

/* none: nothing out (no rule). unrestricted: DNS and the world on any port. restricted: DNS and the
 * world on 80/443, which only the egress sidecar may use (the in-Pod redirect sends the
 * workload's own traffic through it: objects_egress.c). */
static int net_egress(cJSON *spec, const char *mode, const struct bh_kube_opts *o,
                      struct bh_err *err)
{
    static const int web[] = {80, 443, 0};
    /* Egress in policyTypes with no rules denies all; an empty list is not written (the
     * server would drop it, and what it stores should equal what was sent). */
    if (!strcmp(mode, "none"))
        return 0;
    cJSON *egress = cJSON_AddArrayToObject(spec, "egress");
    if (strcmp(mode, "unrestricted") != 0 && strcmp(mode, "restricted") != 0)
        return bh_err_set(err, BH_EINVAL,
                          "spec.network.access: mode %s has no NetworkPolicy on a cluster", mode);
    if (net_dns_rule(egress, o, err) < 0)
        return -1;
    return net_world_rule(egress, o, strcmp(mode, "restricted") ? NULL : web, err);
}

int bh_kube_network_policy(const cJSON *workload, const struct bh_kube_instance *inst,
                           const struct bh_kube_opts *o, cJSON **out, struct bh_err *err)
{
    static const char *const types[] = {"Ingress", "Egress", NULL};
    bh_autofree char *name = NULL;
    if (kube_instance_check(workload, inst, &name, err) < 0)
        return -1;
    cJSON *np = kube_object("networking.k8s.io/v1", "NetworkPolicy", name, o->namespace,
                            bh_json_str(workload, "metadata.name"));
    cJSON_AddStringToObject(cJSON_GetObjectItem(bh_json_get(np, "metadata"), "labels"),
                            BH_KUBE_LABEL_INSTANCE, name);
    cJSON *spec = cJSON_AddObjectToObject(np, "spec");
    cJSON *sel = cJSON_AddObjectToObject(spec, "podSelector");
    cJSON_AddItemToObject(sel, "matchLabels", kube_label_map(BH_KUBE_LABEL_INSTANCE, name));
    kube_add_strings(spec, "policyTypes", types);
    net_ingress(spec, o);
    if (net_egress(spec, kube_access(workload), o, err) < 0) {
        cJSON_Delete(np);
        return -1;
    }
    *out = np;
    return 0;
}
