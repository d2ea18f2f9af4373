/* Server-side apply (ssa.h): fieldsV1 sets walked leaf by leaf, conflicts, ownership
 * transfer, removal of fields an applier dropped, and the structured merge. */
#include "ssa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "kapi.h"
#include "mem.h"

#define SSA_DEPTH_MAX 32 /* deeper fields are owned as a whole by their ancestor */

/* A path from the object's root: the field names, without "f:". */
struct ssa_path {
    const char *key[SSA_DEPTH_MAX];
    int n;
};

static const char *const ssa_system_meta[] = {"name",
                                              "namespace",
                                              "uid",
                                              "resourceVersion",
                                              "generation",
                                              "creationTimestamp",
                                              "deletionTimestamp",
                                              "managedFields",
                                              "generateName",
                                              "selfLink"};

/* The part of an object that fields are owned in: no apiVersion, kind, status or system
 * metadata. Owned. */
static cJSON *ssa_owned_part(const cJSON *obj)
{
    cJSON *c = cJSON_IsObject(obj) ? cJSON_Duplicate(obj, 1) : cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(c, "apiVersion");
    cJSON_DeleteItemFromObjectCaseSensitive(c, "kind");
    cJSON_DeleteItemFromObjectCaseSensitive(c, "status");
    cJSON *md = cJSON_GetObjectItemCaseSensitive(c, "metadata");
    for (size_t i = 0; cJSON_IsObject(md) && i < BH_ARRAY_LEN(ssa_system_meta); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(md, ssa_system_meta[i]);
    if (md && (!cJSON_IsObject(md) || !md->child))
        cJSON_DeleteItemFromObjectCaseSensitive(c, "metadata");
    return c;
}

static cJSON *ssa_tree(const cJSON *v, int depth)
{
    cJSON *t = cJSON_CreateObject();
    if (!cJSON_IsObject(v) || depth >= SSA_DEPTH_MAX)
        return t;
    for (const cJSON *c = v->child; c; c = c->next) {
        bh_autofree char *key = bh_xasprintf("f:%s", c->string);
        cJSON_AddItemToObject(t, key, ssa_tree(c, depth + 1));
    }
    return t;
}

cJSON *bh_ssa_fields(const cJSON *config)
{
    cJSON *part = ssa_owned_part(config);
    cJSON *t = ssa_tree(part, 0);
    cJSON_Delete(part);
    return t;
}

/* ---- sets ---- */

static cJSON *ssa_child(const cJSON *node, const char *key)
{
    if (!cJSON_IsObject(node))
        return NULL;
    for (cJSON *c = node->child; c; c = c->next)
        if (c->string && !strncmp(c->string, "f:", 2) && !strcmp(c->string + 2, key))
            return c;
    return NULL;
}

/* Whether set owns path: the leaf itself, an atomic ancestor of it, or fields inside it. */
static int ssa_owns(const cJSON *set, const struct ssa_path *p)
{
    const cJSON *node = set;
    for (int i = 0; i < p->n; i++) {
        node = ssa_child(node, p->key[i]);
        if (!node)
            return 0;
        if (!node->child)
            return 1;
    }
    return 1;
}

/* Removes path (and what is inside it, or the atomic ancestor holding it) from set; prunes
 * the maps it empties, which would otherwise read as leaves. */
static void ssa_remove_at(cJSON *node, const struct ssa_path *p, int i)
{
    cJSON *c = ssa_child(node, p->key[i]);
    if (!c)
        return;
    if (i + 1 < p->n && c->child) {
        ssa_remove_at(c, p, i + 1);
        if (c->child)
            return;
    }
    cJSON_Delete(cJSON_DetachItemViaPointer(node, c));
}

static void ssa_remove(cJSON *set, const struct ssa_path *p)
{
    if (p->n > 0)
        ssa_remove_at(set, p, 0);
}

/* Adds path as a leaf of set (nothing to do under an atomic ancestor already owned). */
static void ssa_add(cJSON *set, const struct ssa_path *p)
{
    cJSON *node = set;
    for (int i = 0; i < p->n; i++) {
        cJSON *c = ssa_child(node, p->key[i]);
        if (c && !c->child && i + 1 < p->n)
            return;
        if (!c) {
            bh_autofree char *key = bh_xasprintf("f:%s", p->key[i]);
            c = cJSON_AddObjectToObject(node, key);
        }
        node = c;
    }
    while (node->child) /* the whole value now */
        cJSON_Delete(cJSON_DetachItemViaPointer(node, node->child));
}

typedef void (*ssa_leaf_fn)(const struct ssa_path *p, void *ud);

static void ssa_leaves_at(const cJSON *node, struct ssa_path *p, ssa_leaf_fn fn, void *ud)
{
    for (const cJSON *c = node->child; c; c = c->next) {
        if (!c->string || strncmp(c->string, "f:", 2) != 0 || p->n >= SSA_DEPTH_MAX)
            continue;
        p->key[p->n++] = c->string + 2;
        if (cJSON_IsObject(c) && c->child)
            ssa_leaves_at(c, p, fn, ud);
        else
            fn(p, ud);
        p->n--;
    }
}

static void ssa_leaves(const cJSON *set, ssa_leaf_fn fn, void *ud)
{
    struct ssa_path p = {.n = 0};
    if (cJSON_IsObject(set))
        ssa_leaves_at(set, &p, fn, ud);
}

/* ---- values ---- */

static cJSON *ssa_value(const cJSON *obj, const struct ssa_path *p)
{
    const cJSON *v = obj;
    for (int i = 0; v && i < p->n; i++)
        v = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, p->key[i]) : NULL;
    return (cJSON *)v;
}

static void ssa_delete_value(cJSON *obj, const struct ssa_path *p)
{
    struct ssa_path parent = *p;
    parent.n--;
    cJSON *v = ssa_value(obj, &parent);
    if (cJSON_IsObject(v))
        cJSON_DeleteItemFromObjectCaseSensitive(v, p->key[p->n - 1]);
}

static int ssa_same(const cJSON *a, const cJSON *b)
{
    return a && b && cJSON_Compare(a, b, 1);
}

static void ssa_path_text(const struct ssa_path *p, char *out, size_t cap)
{
    size_t w = 0;
    out[0] = '\0';
    for (int i = 0; i < p->n && w < cap; i++)
        w += (size_t)snprintf(out + w, cap - w, ".%s", p->key[i]);
}

/* ---- managedFields ---- */

static const char *ssa_str(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* The object's managedFields, well-formed entries only. Owned. */
static cJSON *ssa_managed(const cJSON *obj)
{
    cJSON *out = cJSON_CreateArray(), *e;
    cJSON_ArrayForEach(e, bh_json_get(obj, "metadata.managedFields")) {
        if (ssa_str(e, "manager") && ssa_str(e, "operation") &&
            cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(e, "fieldsV1")))
            cJSON_AddItemToArray(out, cJSON_Duplicate(e, 1));
    }
    return out;
}

static cJSON *ssa_set_of(const cJSON *entry)
{
    return cJSON_GetObjectItemCaseSensitive(entry, "fieldsV1");
}

/* manager's entry for op, made if missing; an existing one remembers its fields as "before"
 * (removed by ssa_store) so an unchanged entry keeps its time. */
static cJSON *ssa_entry(cJSON *mf, const char *manager, const char *op)
{
    cJSON *e;
    cJSON_ArrayForEach(e, mf) {
        if (!strcmp(ssa_str(e, "manager"), manager) && !strcmp(ssa_str(e, "operation"), op)) {
            cJSON_AddItemToObject(e, "before", cJSON_Duplicate(ssa_set_of(e), 1));
            return e;
        }
    }
    e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "manager", manager);
    cJSON_AddStringToObject(e, "operation", op);
    cJSON_AddObjectToObject(e, "fieldsV1");
    cJSON_AddItemToArray(mf, e);
    return e;
}

/* Stamps entry and writes mf (owned) into obj, without the entries that own nothing. */
static void ssa_store(cJSON *obj, cJSON *mf, cJSON *entry, const char *api_version, const char *now)
{
    /* An entry whose fields did not change keeps its time: a write that changes nothing stays
     * a no-op the store does not record. */
    const cJSON *was = cJSON_GetObjectItemCaseSensitive(entry, "before");
    if (!was || !cJSON_Compare(was, ssa_set_of(entry), 1) || !ssa_str(entry, "time")) {
        bh_json_set_str(entry, "apiVersion", api_version);
        bh_json_set_str(entry, "time", now);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(entry, "before");
    bh_json_set_str(entry, "fieldsType", "FieldsV1");
    cJSON *set = cJSON_DetachItemFromObjectCaseSensitive(entry, "fieldsV1");
    cJSON_AddItemToObject(entry, "fieldsV1", set); /* keeps fieldsV1 last, as the server does */
    for (cJSON *e = mf->child, *next; e; e = next) {
        next = e->next;
        if (!ssa_set_of(e)->child)
            cJSON_Delete(cJSON_DetachItemViaPointer(mf, e));
    }
    cJSON *md = cJSON_IsObject(obj) ? bh_json_obj(obj, "metadata") : NULL;
    cJSON_DeleteItemFromObjectCaseSensitive(md, "managedFields");
    if (md && mf->child)
        cJSON_AddItemToObject(md, "managedFields", mf);
    else
        cJSON_Delete(mf);
}

/* ---- apply ---- */

struct ssa_apply {
    const cJSON *live, *config;
    cJSON *mf, *mine, *applied;
    const char *manager;
    struct bh_ssa_result *res;
    int force;
    cJSON *drop; /* set: fields to remove from the live object */
};

static int ssa_is_mine(const struct ssa_apply *a, const cJSON *e)
{
    return e == a->mine;
}

/* A leaf of the applied set: a conflict when its value changes and another manager owns it
 * (forced: the other manager loses it). */
static void ssa_check_leaf(const struct ssa_path *p, void *ud)
{
    struct ssa_apply *a = ud;
    if (ssa_same(ssa_value(a->live, p), ssa_value(a->config, p)))
        return; /* same value: owned together */
    cJSON *e;
    cJSON_ArrayForEach(e, a->mf) {
        if (ssa_is_mine(a, e) || !strcmp(ssa_str(e, "manager"), a->manager) ||
            !ssa_owns(ssa_set_of(e), p))
            continue;
        if (a->force) {
            ssa_remove(ssa_set_of(e), p);
            continue;
        }
        if (a->res->n_conflicts < BH_SSA_CONFLICTS_MAX) {
            struct bh_ssa_conflict *c = &a->res->conflicts[a->res->n_conflicts];
            snprintf(c->manager, sizeof(c->manager), "%s", ssa_str(e, "manager"));
            ssa_path_text(p, c->field, sizeof(c->field));
        }
        a->res->n_conflicts++;
    }
}

/* A leaf the manager applied before: removed from the object when it applies it no more and
 * no one else owns it. */
static void ssa_drop_leaf(const struct ssa_path *p, void *ud)
{
    struct ssa_apply *a = ud;
    if (ssa_owns(a->applied, p))
        return;
    cJSON *e;
    cJSON_ArrayForEach(e, a->mf)
        if (!ssa_is_mine(a, e) && ssa_owns(ssa_set_of(e), p))
            return;
    ssa_add(a->drop, p);
}

static void ssa_delete_leaf(const struct ssa_path *p, void *ud)
{
    ssa_delete_value(ud, p);
}

int bh_ssa_apply(cJSON **live, const cJSON *config, const char *manager, int force,
                 const char *api_version, const char *now, struct bh_ssa_result *res,
                 struct bh_err *err)
{
    memset(res, 0, sizeof(*res));
    if (!cJSON_IsObject(config))
        return bh_err_set(err, BH_EINVAL, "an applied configuration must be an object");
    struct ssa_apply a = {.live = *live, .config = config, .manager = manager, .force = force};
    a.res = res;
    a.mf = ssa_managed(*live);
    a.mine = ssa_entry(a.mf, manager, "Apply");
    a.applied = bh_ssa_fields(config);
    ssa_leaves(a.applied, ssa_check_leaf, &a);
    if (res->n_conflicts > 0) {
        cJSON_Delete(a.mf);
        cJSON_Delete(a.applied);
        return bh_err_set(err, BH_ECONFLICT, "apply conflicts with other field managers");
    }
    a.drop = cJSON_CreateObject();
    ssa_leaves(ssa_set_of(a.mine), ssa_drop_leaf, &a);
    ssa_leaves(a.drop, ssa_delete_leaf, *live);
    cJSON_Delete(a.drop);
    cJSON *patch = ssa_owned_part(config);
    bh_kapi_merge_patch(live, patch);
    cJSON_Delete(patch);
    cJSON_ReplaceItemInObjectCaseSensitive(a.mine, "fieldsV1", a.applied);
    ssa_store(*live, a.mf, a.mine, api_version, now);
    return 0;
}

/* ---- updates ---- */

struct ssa_update {
    const cJSON *old, *obj;
    cJSON *mf, *mine, *changed;
};

static void ssa_changed_leaf(const struct ssa_path *p, void *ud)
{
    struct ssa_update *u = ud;
    if (!ssa_same(ssa_value(u->old, p), ssa_value(u->obj, p)))
        ssa_add(u->changed, p);
}

/* Another manager's leaf: lost when the update changed it or removed it. */
static void ssa_take_leaf(const struct ssa_path *p, void *ud)
{
    struct ssa_update *u = ud;
    cJSON *e;
    cJSON_ArrayForEach(e, u->mf) {
        if (e != u->mine && ssa_owns(ssa_set_of(e), p))
            ssa_remove(ssa_set_of(e), p);
    }
    ssa_add(ssa_set_of(u->mine), p);
}

static void ssa_gone_leaf(const struct ssa_path *p, void *ud)
{
    struct ssa_update *u = ud;
    if (!ssa_value(u->obj, p)) {
        cJSON *e;
        cJSON_ArrayForEach(e, u->mf)
            ssa_remove(ssa_set_of(e), p);
    }
}

void bh_ssa_update(const cJSON *old, cJSON *obj, const char *manager, const char *api_version,
                   const char *now)
{
    struct ssa_update u = {.old = old, .obj = obj};
    u.mf = ssa_managed(old);
    u.mine = ssa_entry(u.mf, manager, "Update");
    u.changed = cJSON_CreateObject();
    cJSON *now_set = bh_ssa_fields(obj);
    ssa_leaves(now_set, ssa_changed_leaf, &u);
    cJSON_Delete(now_set);
    cJSON *e;
    cJSON_ArrayForEach(e, u.mf) {
        cJSON *copy = cJSON_Duplicate(ssa_set_of(e), 1);
        ssa_leaves(copy, ssa_gone_leaf, &u);
        cJSON_Delete(copy);
    }
    ssa_leaves(u.changed, ssa_take_leaf, &u);
    cJSON_Delete(u.changed);
    ssa_store(obj, u.mf, u.mine, api_version, now);
}

char *bh_ssa_conflict_message(const struct bh_ssa_result *res, const char *api_version)
{
    int n = res->n_conflicts, listed = n < BH_SSA_CONFLICTS_MAX ? n : BH_SSA_CONFLICTS_MAX;
    if (n == 1)
        return bh_xasprintf("Apply failed with 1 conflict: conflict with \"%s\" using %s: %s",
                            res->conflicts[0].manager, api_version, res->conflicts[0].field);
    char *msg = bh_xasprintf("Apply failed with %d conflicts:", n);
    for (int i = 0; i < listed; i++) {
        char *next =
            bh_xasprintf("%s conflict with \"%s\" using %s: %s%s", msg, res->conflicts[i].manager,
                         api_version, res->conflicts[i].field, i + 1 < listed ? "," : "");
        free(msg);
        msg = next;
    }
    return msg;
}
