/* Request bodies and manifest files to cJSON: JSON via cJSON, YAML via the libyaml event
 * parser (so that anchors, tags and scalar styles are under our control). */
#include "resource.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "mem.h"

/* Deep documents are never legitimate resources; the limit also bounds recursion. */
#define PARSE_MAX_DEPTH 64
/* Bounds the quadratic duplicate-key check per YAML mapping. */
#define PARSE_MAX_KEYS 1024

/* ---- JSON -------------------------------------------------------------------------------- */

static void parse_line_col(const char *body, const char *at, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (const char *p = body; p < at; p++) {
        if (*p == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int parse_depth_ok(const cJSON *node, int depth)
{
    if (depth > PARSE_MAX_DEPTH)
        return 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, node) {
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && !parse_depth_ok(c, depth + 1))
            return 0;
    }
    return 1;
}

static int parse_json(const char *body, size_t len, cJSON **out, struct bh_err *err)
{
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    size_t line, col;
    while (doc && end < body + len && isspace((unsigned char)*end))
        end++;
    if (!doc || end != body + len) {
        parse_line_col(body, end ? end : body, &line, &col);
        cJSON_Delete(doc);
        return bh_err_set(err, BH_EINVAL, "invalid JSON at line %zu, column %zu", line, col);
    }
    if (!parse_depth_ok(doc, 1)) {
        cJSON_Delete(doc);
        return bh_err_set(err, BH_EINVAL, "document nested deeper than %d levels", PARSE_MAX_DEPTH);
    }
    *out = doc;
    return 0;
}

/* ---- YAML scalars (YAML 1.2 core schema) ------------------------------------------------- */

static int parse_match_all(const char *s, const char *set)
{
    return *s && strspn(s, set) == strlen(s);
}

static int parse_is_int(const char *s)
{
    if (!strncmp(s, "0o", 2))
        return parse_match_all(s + 2, "01234567");
    if (!strncmp(s, "0x", 2))
        return parse_match_all(s + 2, "0123456789abcdefABCDEF");
    return parse_match_all(s + (*s == '-' || *s == '+'), "0123456789");
}

/* Leading zeros are decimal in YAML 1.2 (not octal as in C). */
static double parse_int_value(const char *s)
{
    if (!strncmp(s, "0o", 2))
        return (double)strtoll(s + 2, NULL, 8);
    if (!strncmp(s, "0x", 2))
        return (double)strtoull(s + 2, NULL, 16);
    return (double)strtoll(s, NULL, 10);
}

/* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static int parse_is_float(const char *s)
{
    const char *p = s + (*s == '-' || *s == '+');
    size_t whole = strspn(p, "0123456789");
    p += whole;
    size_t frac = 0;
    if (*p == '.') {
        frac = strspn(p + 1, "0123456789");
        p += 1 + frac;
    }
    if (!whole && !frac)
        return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        p += (*p == '-' || *p == '+');
        size_t exp = strspn(p, "0123456789");
        if (!exp)
            return 0;
        p += exp;
    }
    return *p == '\0';
}

static int parse_is_one_of(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (!strcmp(s, *words))
            return 1;
    return 0;
}

/* .inf and .nan are core-schema floats but JSON cannot carry them, so they stay strings. */
static cJSON *parse_plain_scalar(const char *s)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    if (parse_is_one_of(s, nulls))
        return cJSON_CreateNull();
    if (parse_is_one_of(s, trues))
        return cJSON_CreateTrue();
    if (parse_is_one_of(s, falses))
        return cJSON_CreateFalse();
    if (parse_is_int(s))
        return cJSON_CreateNumber(parse_int_value(s));
    if (parse_is_float(s))
        return cJSON_CreateNumber(strtod(s, NULL));
    return cJSON_CreateString(s);
}

/* ---- YAML structure ---------------------------------------------------------------------- */

struct yaml_ctx {
    yaml_parser_t parser;
    struct bh_err *err;
};

static int yaml_fail_at(struct yaml_ctx *c, const yaml_mark_t *m, const char *what)
{
    return bh_err_set(c->err, BH_EINVAL, "invalid YAML at line %zu, column %zu: %s", m->line + 1,
                      m->column + 1, what);
}

static int yaml_next(struct yaml_ctx *c, yaml_event_t *ev)
{
    if (yaml_parser_parse(&c->parser, ev))
        return 0;
    const char *problem = c->parser.problem ? c->parser.problem : "syntax error";
    return yaml_fail_at(c, &c->parser.problem_mark, problem);
}

static int yaml_node(struct yaml_ctx *c, yaml_event_t *ev, int depth, cJSON **out);

static const yaml_char_t *yaml_anchor(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return ev->data.scalar.anchor;
    case YAML_SEQUENCE_START_EVENT:
        return ev->data.sequence_start.anchor;
    case YAML_MAPPING_START_EVENT:
        return ev->data.mapping_start.anchor;
    default:
        return NULL;
    }
}

static cJSON *yaml_scalar(const yaml_event_t *ev)
{
    const char *value = (const char *)ev->data.scalar.value;
    const char *tag = (const char *)ev->data.scalar.tag;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
        (tag && (!strcmp(tag, YAML_STR_TAG) || !strcmp(tag, "!"))))
        return cJSON_CreateString(value);
    return parse_plain_scalar(value);
}

static int yaml_sequence(struct yaml_ctx *c, int depth, cJSON *arr)
{
    for (;;) {
        yaml_event_t ev;
        if (yaml_next(c, &ev) < 0)
            return -1;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        cJSON *item = NULL;
        if (yaml_node(c, &ev, depth + 1, &item) < 0)
            return -1;
        cJSON_AddItemToArray(arr, item);
    }
}

/* Reads one mapping key: a scalar, taken as a string whatever it looks like. *key owned. */
static int yaml_key(struct yaml_ctx *c, yaml_event_t *ev, const cJSON *obj, char **key)
{
    int rc = 0;
    if (ev->type != YAML_SCALAR_EVENT)
        rc = yaml_fail_at(c, &ev->start_mark, "mapping keys must be scalars");
    else if (cJSON_GetArraySize(obj) >= PARSE_MAX_KEYS)
        rc = yaml_fail_at(c, &ev->start_mark, "too many keys in one mapping");
    else if (cJSON_HasObjectItem(obj, (const char *)ev->data.scalar.value))
        rc = bh_err_set(c->err, BH_EINVAL,
                        "invalid YAML at line %zu, column %zu: duplicate key "
                        "\"%s\"",
                        ev->start_mark.line + 1, ev->start_mark.column + 1,
                        (const char *)ev->data.scalar.value);
    else
        *key = bh_xstrdup((const char *)ev->data.scalar.value);
    yaml_event_delete(ev);
    return rc;
}

static int yaml_mapping(struct yaml_ctx *c, int depth, cJSON *obj)
{
    for (;;) {
        yaml_event_t ev;
        bh_autofree char *key = NULL;
        cJSON *value = NULL;
        if (yaml_next(c, &ev) < 0)
            return -1;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (yaml_key(c, &ev, obj, &key) < 0 || yaml_next(c, &ev) < 0 ||
            yaml_node(c, &ev, depth + 1, &value) < 0)
            return -1;
        cJSON_AddItemToObject(obj, key, value);
    }
}

/* Converts the node that starts with ev (consumed) into *out (owned). */
static int yaml_node(struct yaml_ctx *c, yaml_event_t *ev, int depth, cJSON **out)
{
    int rc = 0;
    yaml_mark_t mark = ev->start_mark;
    if (ev->type == YAML_ALIAS_EVENT || yaml_anchor(ev))
        rc = yaml_fail_at(c, &mark, "anchors and aliases are not supported");
    else if (depth > PARSE_MAX_DEPTH)
        rc = yaml_fail_at(c, &mark, "document nested too deeply");
    else if (ev->type == YAML_SCALAR_EVENT)
        *out = yaml_scalar(ev);
    else if (ev->type == YAML_SEQUENCE_START_EVENT)
        *out = cJSON_CreateArray();
    else if (ev->type == YAML_MAPPING_START_EVENT)
        *out = cJSON_CreateObject();
    else
        rc = yaml_fail_at(c, &mark, "unexpected event");
    int type = ev->type;
    yaml_event_delete(ev);
    if (rc == 0 && type == YAML_SEQUENCE_START_EVENT)
        rc = yaml_sequence(c, depth, *out);
    else if (rc == 0 && type == YAML_MAPPING_START_EVENT)
        rc = yaml_mapping(c, depth, *out);
    if (rc < 0 && *out) {
        cJSON_Delete(*out);
        *out = NULL;
    }
    return rc;
}

/* Parses one document after its DOCUMENT_START; *doc is NULL for an empty document. */
static int yaml_document(struct yaml_ctx *c, cJSON **doc)
{
    yaml_event_t ev;
    *doc = NULL;
    if (yaml_next(c, &ev) < 0 || yaml_node(c, &ev, 1, doc) < 0)
        return -1;
    if (yaml_next(c, &ev) < 0) { /* an error after the root node: drop what was built */
        cJSON_Delete(*doc);
        *doc = NULL;
        return -1;
    }
    yaml_event_delete(&ev); /* DOCUMENT_END */
    if (cJSON_IsNull(*doc)) {
        cJSON_Delete(*doc);
        *doc = NULL;
    }
    return 0;
}

/* Appends every non-empty document of the stream to docs. */
static int yaml_stream(struct yaml_ctx *c, cJSON *docs)
{
    for (;;) {
        yaml_event_t ev;
        if (yaml_next(c, &ev) < 0)
            return -1;
        int type = ev.type;
        yaml_event_delete(&ev);
        if (type == YAML_STREAM_END_EVENT)
            return 0;
        if (type != YAML_DOCUMENT_START_EVENT && type != YAML_STREAM_START_EVENT)
            return yaml_fail_at(c, &c->parser.mark, "unexpected event");
        cJSON *doc = NULL;
        if (type == YAML_DOCUMENT_START_EVENT && yaml_document(c, &doc) < 0)
            return -1;
        if (doc)
            cJSON_AddItemToArray(docs, doc);
    }
}

static int parse_yaml_all(const char *body, size_t len, cJSON **out, struct bh_err *err)
{
    struct yaml_ctx c = {.err = err};
    if (!yaml_parser_initialize(&c.parser))
        return bh_err_set(err, BH_EIO, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)body, len);
    cJSON *docs = cJSON_CreateArray();
    int rc = yaml_stream(&c, docs);
    yaml_parser_delete(&c.parser);
    if (rc < 0) {
        cJSON_Delete(docs);
        return -1;
    }
    *out = docs;
    return 0;
}

/* ---- entry points ------------------------------------------------------------------------ */

/* The first non-space character, or '\0' for a blank body. */
static char parse_first_char(const char *body, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)body[i]))
            return body[i];
    return '\0';
}

int bh_resource_parse(const char *body, size_t len, cJSON **out, struct bh_err *err)
{
    char first = parse_first_char(body, len);
    if (!first)
        return bh_err_set(err, BH_EINVAL, "request body is empty");
    if (first == '{' || first == '[')
        return parse_json(body, len, out, err);
    cJSON *docs = NULL;
    if (parse_yaml_all(body, len, &docs, err) < 0)
        return -1;
    int n = cJSON_GetArraySize(docs);
    if (n != 1) {
        cJSON_Delete(docs);
        return n ? bh_err_set(err, BH_EINVAL, "expected one YAML document, found %d", n)
                 : bh_err_set(err, BH_EINVAL, "request body is empty");
    }
    *out = cJSON_DetachItemFromArray(docs, 0);
    cJSON_Delete(docs);
    return 0;
}

static int parse_json_all(const char *body, size_t len, cJSON **out, struct bh_err *err)
{
    cJSON *doc = NULL;
    if (parse_json(body, len, &doc, err) < 0)
        return -1;
    if (cJSON_IsObject(doc)) {
        *out = cJSON_CreateArray();
        cJSON_AddItemToArray(*out, doc);
        return 0;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, doc) {
        if (!cJSON_IsObject(item)) {
            cJSON_Delete(doc);
            return bh_err_set(err, BH_EINVAL, "every element of a JSON array must be an object");
        }
    }
    *out = doc;
    return 0;
}

int bh_resource_parse_all(const char *body, size_t len, cJSON **out, struct bh_err *err)
{
    char first = parse_first_char(body, len);
    if (!first)
        return bh_err_set(err, BH_EINVAL, "request body is empty");
    if (first == '{' || first == '[')
        return parse_json_all(body, len, out, err);
    return parse_yaml_all(body, len, out, err);
}
