/* Shared by the object builders (objects*.c). */
#ifndef BH_KUBE_OBJECTS_INT_H
#define BH_KUBE_OBJECTS_INT_H

#include "objects.h"

/* {apiVersion, kind, metadata: {name, namespace, labels: {managed, workload}}}, owned. */
cJSON *kube_object(const char *api_version, const char *kind, const char *name,
                   const char *namespace, const char *workload);
/* The common checks of a builder's input: the workload's name, the instance's id and label
 * values; *name (owned) is the instance's object name. */
int kube_instance_check(const cJSON *workload, const struct bh_kube_instance *inst, char **name,
                        struct bh_err *err);
/* Adds a JSON array of the NULL-terminated strings v as key. */
void kube_add_strings(cJSON *obj, const char *key, const char *const *v);
/* {name: value} as a one-entry object, for selectors. */
cJSON *kube_label_map(const char *key, const char *value);
const char *kube_access(const cJSON *workload);

/* The egress parts of a `restricted` Pod (objects_egress.c): adds the init container, the
 * sidecar, the CA volumes, and the CA mount and env of the main container. */
int kube_egress_add(cJSON *pod_spec, cJSON *main, const cJSON *workload,
                    const struct bh_kube_opts *o, struct bh_err *err);

#endif
