/* Patches of the Kubernetes-compatible API: JSON merge patch (RFC 7386, also what kubectl's
 * client-side apply sends for custom resources) and JSON patch (RFC 6902). Outside input:
 * fuzzed by tests/fuzz/fuzz_kapi.c. */
#include <stdlib.h>
#include <string.h>

#include "kapi.h"
#include "mem.h"

void bh_kapi_merge_patch(cJSON **doc, const cJSON *patch)
{
    if (!cJSON_IsObject(patch)) {
        cJSON_Delete(*doc);
        *doc = cJSON_Duplicate(patch, 1);
        return;
    }
    if (!cJSON_IsObject(*doc)) {
        cJSON_Delete(*doc);
        *doc = cJSON_CreateObject();
    }
    for (const cJSON *p = patch->child; p; p = p->next) {
        if (cJSON_IsNull(p)) {
            cJSON_DeleteItemFromObjectCaseSensitive(*doc, p->string);
            continue;
        }
        cJSON *target = cJSON_DetachItemFromObjectCaseSensitive(*doc, p->string);
        bh_kapi_merge_patch(&target, p);
        cJSON_AddItemToObject(*doc, p->string, target);
    }
}

/* ---- JSON patch ---- */

/* Decodes one JSON pointer token ("~1" is "/", "~0" is "~") into out. */
static int jp_token(const char *s, size_t n, char *out, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '~') {
            if (i + 1 >= n || (s[i + 1] != '0' && s[i + 1] != '1'))
                return -1;
            c = s[++i] == '0' ? '~' : '/';
        }
        if (w + 1 >= cap)
            return -1;
        out[w++] = c;
    }
    out[w] = '\0';
    return 0;
}

/* An array index token: digits only, or "-" (one past the end) when allowed. */
static int jp_index(const char *tok, int size, int allow_end)
{
    if (allow_end && strcmp(tok, "-") == 0)
        return size;
    if (!*tok || strspn(tok, "0123456789") != strlen(tok) || strlen(tok) > 9 ||
        (tok[0] == '0' && tok[1]))
        return -1;
    int i = atoi(tok);
    return i <= size - !allow_end ? i : -1;
}

/* Walks to the parent of the pointer's last token; *last receives that token. */
static cJSON *jp_parent(cJSON *doc, const char *ptr, char *last, size_t cap)
{
    if (ptr[0] != '/')
        return NULL;
    cJSON *cur = doc;
    const char *p = ptr + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (jp_token(p, n, last, cap) < 0)
            return NULL;
        if (!slash)
            return cur;
        if (cJSON_IsArray(cur)) {
            int i = jp_index(last, cJSON_GetArraySize(cur), 0);
            cur = i < 0 ? NULL : cJSON_GetArrayItem(cur, i);
        } else {
            cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, last) : NULL;
        }
        if (!cur)
            return NULL;
        p = slash + 1;
    }
}

static cJSON *jp_get(cJSON *doc, const char *ptr)
{
    char last[256];
    if (!*ptr)
        return doc;
    cJSON *parent = jp_parent(doc, ptr, last, sizeof(last));
    if (cJSON_IsArray(parent)) {
        int i = jp_index(last, cJSON_GetArraySize(parent), 0);
        return i < 0 ? NULL : cJSON_GetArrayItem(parent, i);
    }
    return cJSON_IsObject(parent) ? cJSON_GetObjectItemCaseSensitive(parent, last) : NULL;
}

/* Detaches the value at ptr; NULL if there is none. */
static cJSON *jp_detach(cJSON *doc, const char *ptr)
{
    char last[256];
    cJSON *parent = *ptr ? jp_parent(doc, ptr, last, sizeof(last)) : NULL;
    if (cJSON_IsArray(parent)) {
        int i = jp_index(last, cJSON_GetArraySize(parent), 0);
        return i < 0 ? NULL : cJSON_DetachItemFromArray(parent, i);
    }
    return cJSON_IsObject(parent) ? cJSON_DetachItemFromObjectCaseSensitive(parent, last) : NULL;
}

/* Adds value (owned) at ptr: replaces a member, inserts into an array. */
static int jp_add(cJSON **doc, const char *ptr, cJSON *value)
{
    char last[256];
    if (!*ptr) {
        cJSON_Delete(*doc);
        *doc = value;
        return 0;
    }
    cJSON *parent = jp_parent(*doc, ptr, last, sizeof(last));
    if (cJSON_IsArray(parent)) {
        int size = cJSON_GetArraySize(parent), i = jp_index(last, size, 1);
        if (i < 0)
            goto fail;
        if (i == size)
            cJSON_AddItemToArray(parent, value);
        else
            cJSON_InsertItemInArray(parent, i, value);
        return 0;
    }
    if (!cJSON_IsObject(parent))
        goto fail;
    cJSON_DeleteItemFromObjectCaseSensitive(parent, last);
    cJSON_AddItemToObject(parent, last, value);
    return 0;
fail:
    cJSON_Delete(value);
    return -1;
}

static int jp_op(cJSON **doc, const cJSON *op, struct bh_err *err)
{
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(op, "op"));
    const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(op, "path"));
    const char *from = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(op, "from"));
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(op, "value");
    if (!name || !path)
        return bh_err_set(err, BH_EINVAL, "an operation needs \"op\" and \"path\" strings");
    int needs_value = !strcmp(name, "add") || !strcmp(name, "replace") || !strcmp(name, "test");
    if ((needs_value && !value) || ((!strcmp(name, "move") || !strcmp(name, "copy")) && !from))
        return bh_err_set(err, BH_EINVAL, "%s %.128s: missing %s", name, path,
                          needs_value ? "value" : "from");
    cJSON *got;
    int rc = -1;
    if (!strcmp(name, "add")) {
        rc = jp_add(doc, path, cJSON_Duplicate(value, 1));
    } else if (!strcmp(name, "remove")) {
        got = jp_detach(*doc, path);
        rc = got ? 0 : -1;
        cJSON_Delete(got);
    } else if (!strcmp(name, "replace")) {
        got = *path ? jp_detach(*doc, path) : NULL;
        rc = (got || !*path) ? jp_add(doc, path, cJSON_Duplicate(value, 1)) : -1;
        cJSON_Delete(got);
    } else if (!strcmp(name, "test")) {
        got = jp_get(*doc, path);
        rc = got && cJSON_Compare(got, value, 1) ? 0 : -1;
    } else if (!strcmp(name, "copy")) {
        got = jp_get(*doc, from);
        rc = got ? jp_add(doc, path, cJSON_Duplicate(got, 1)) : -1;
    } else if (!strcmp(name, "move")) {
        size_t n = strlen(from);
        got = strncmp(path, from, n) == 0 && path[n] == '/' ? NULL : jp_detach(*doc, from);
        rc = got ? jp_add(doc, path, got) : -1;
    } else {
        return bh_err_set(err, BH_EINVAL, "unknown operation \"%.32s\"", name);
    }
    return rc < 0 ? bh_err_set(err, BH_EINVAL, "%s %.128s: no such path or test failed", name, path)
                  : 0;
}

int bh_kapi_json_patch(cJSON **doc, const cJSON *ops, struct bh_err *err)
{
    if (!cJSON_IsArray(ops))
        return bh_err_set(err, BH_EINVAL, "a JSON patch is an array of operations");
    const cJSON *op;
    cJSON_ArrayForEach(op, ops) {
        if (!cJSON_IsObject(op))
            return bh_err_set(err, BH_EINVAL, "each operation is an object");
        if (jp_op(doc, op, err) < 0)
            return -1;
    }
    return 0;
}
