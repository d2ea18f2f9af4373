/* The four resource kinds of group boilerhouse.dev/v1alpha1: parsing request bodies and
 * files (JSON or YAML), and validation with the same rules as the CRDs in crds/. */
#ifndef BH_RESOURCE_H
#define BH_RESOURCE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "err.h"

#define BH_API_GROUP "boilerhouse.dev"
#define BH_API_VERSION "boilerhouse.dev/v1alpha1"
/* The finalizer that keeps a deleted workload until its controller has released its claims
 * and drained its instances (workload.c); bh_resource_validate adds it. */
#define BH_RESOURCE_FINALIZER "boilerhouse.dev/cleanup"

/* Parses one document, JSON or YAML (detected), into *out (owned). YAML scalars become
 * numbers/bools/null per the YAML 1.2 core schema unless quoted. Errors name line/column. */
BH_MUST_CHECK int bh_resource_parse(const char *body, size_t len, cJSON **out, struct bh_err *err);
/* Parses a multi-document YAML (or a JSON object/array) into an owned array of objects. */
BH_MUST_CHECK int bh_resource_parse_all(const char *body, size_t len, cJSON **out,
                                        struct bh_err *err);
/* Validates a whole object of one of the four kinds against its schema: apiVersion, kind,
 * metadata (name a DNS-1123 label), spec (required fields, types, enums, minimums, unknown
 * fields rejected), status if present. Fills defaults into spec (idle.action=hibernate,
 * network.access=none, pool maxFillConcurrency=2) and, into a workload's metadata.finalizers,
 * BH_RESOURCE_FINALIZER unless the workload is being deleted. BH_EINVAL with a message that starts
 * with the field path: "spec.resources.vcpus: must be greater than 0". */
BH_MUST_CHECK int bh_resource_validate(cJSON *obj, struct bh_err *err);
/* Validates only a spec for kind ("BoilerhouseWorkload", ...), path-prefixed with "spec". */
BH_MUST_CHECK int bh_resource_validate_spec(const char *kind, cJSON *spec, struct bh_err *err);
/* A new object {apiVersion, kind, metadata: {name}} of any kind, internal ones included. */
cJSON *bh_resource_new(const char *kind, const char *name);

/* Naming of a kind for the Kubernetes-compatible API: "boilerhouseworkloads", "bhw". NULL for
 * an unknown kind. Static strings. */
const char *bh_resource_plural(const char *kind);
const char *bh_resource_short_name(const char *kind);
/* The kind served under a plural resource name, or NULL. */
const char *bh_resource_kind_for_plural(const char *plural);
/* The OpenAPI v3 schema of spec for kind, as the validator's tables describe it (types,
 * properties, required, enum, minimum/exclusiveMinimum/maximum, defaults); owned, NULL for an
 * unknown kind. crds/ must carry the same schema; a unit test compares them. */
cJSON *bh_resource_spec_schema(const char *kind);

#endif
