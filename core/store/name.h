/* Names: the rules for the names that enter from outside (object names, tenant IDs), and the
 * one name of a (tenant, workload) pair that its claim and snapshot records share. */
#ifndef BH_NAME_H
#define BH_NAME_H

#include <cjson/cJSON.h>

/* DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters. */
int bh_name_label_valid(const char *name);
/* The tenant ID rule, everywhere a tenant ID enters: a Kubernetes label value (it becomes the
 * boilerhouse.dev/tenant label): [A-Za-z0-9._-]{1,63}, beginning and ending with a letter or
 * digit. Such an ID is one safe path component and never needs shell quoting. */
int bh_name_tenant_valid(const char *id);
/* The object name of (tenant, workload)'s claim and snapshot records:
 * "<workload>-<sanitised tenant>-<hash>", a valid DNS-1123 label, unique per pair. Owned. */
char *bh_name_pair(const char *tenant, const char *workload);
/* The default name of (tenant, workload)'s claim, as documented: "claim-<tenant>-<workload>"
 * when the tenant ID is written in it as it is (lowercase letters and digits only: with no
 * '-' in the tenant part, two pairs never meet on one name) and the whole is a DNS-1123
 * label; else "claim-<tenant lower-cased, other characters as '-'>-<workload>-<hash>", cut to
 * 63 characters, the hash (of the exact pair) keeping it unique. Owned. */
char *bh_name_claim(const char *tenant, const char *workload);
/* True if a record found by its pair name really is (tenant, workload)'s (spec.tenantId and
 * spec.workloadRef): checked wherever one is read by that name. */
int bh_name_is_pair(const cJSON *obj, const char *tenant, const char *workload);

#endif
