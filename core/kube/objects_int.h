/* Shared by the object builders (objects*.c). */
#ifndef BH_KUBE_OBJECTS_INT_H
#define BH_KUBE_OBJECTS_INT_H

#include "objects.h"

/* {apiVersion, kind, metadata: {name, namespace, labels: {managed, workload}}}, owned;
 * workload NULL: an object of no one workload. */
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
/* Containers of the Pod besides the workload's own (objects_egress.c, objects_agent.c). */
/* {limits: {cpu, memory}, requests: the same}, owned. */
cJSON *kube_resources(const char *cpu, const char *mem);
/* A hardened context: run as uid, read-only root, no escalation, no capabilities but add
 * (NULL-terminated, or NULL). Owned. */
cJSON *kube_security(int uid, const char *const *add);
/* {name, image, imagePullPolicy: IfNotPresent, command}, owned. */
cJSON *kube_container(const char *name, const char *image, const char *const *command);
/* Appends a volumeMount to container c (sub_path NULL: the volume's root). */
void kube_mount(cJSON *c, const char *volume, const char *path, const char *sub_path,
                int read_only);

/* The egress parts of a `restricted` Pod (objects_egress.c): adds the init container, the
 * sidecar, the CA volumes, and the CA mount and env of the main container. */
int kube_egress_add(cJSON *pod_spec, cJSON *main, const cJSON *workload,
                    const struct bh_kube_opts *o, struct bh_err *err);

/* The snapshot agent of a Pod with overlay directories (objects_agent.c): the shared overlay
 * volume, its subPath mounts in the main container, the sidecar and, with inst->restore, the
 * restore init container. */
int kube_agent_add(cJSON *pod_spec, cJSON *main, const cJSON *workload,
                   const struct bh_kube_instance *inst, const struct bh_kube_opts *o,
                   struct bh_err *err);

#endif
