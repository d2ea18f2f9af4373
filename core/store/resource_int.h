/* Private to the resource module: the declarative schema tables (resource_schema.c) that the
 * generic validator (resource.c) walks, and that are exported as OpenAPI for the CRD check. */
#ifndef BH_RESOURCE_INT_H
#define BH_RESOURCE_INT_H

#include <cjson/cJSON.h>

#include "err.h"

enum bh_resource_type {
    BH_T_STRING,
    BH_T_INT,
    BH_T_NUMBER,
    BH_T_BOOL,
    BH_T_OBJECT,   /* known fields only */
    BH_T_ARRAY,    /* of .items */
    BH_T_STRMAP,   /* object of string values (labels, env) */
    BH_T_FREEFORM, /* any object, not inspected (driver options, plugin config) */
    BH_T_ANY,      /* any value, not inspected (system metadata) */
};

enum {
    BH_F_REQUIRED = 1 << 0,
    BH_F_MIN = 1 << 1,      /* value >= min */
    BH_F_EXCL_MIN = 1 << 2, /* value > min */
    BH_F_MAX = 1 << 3,      /* value <= max */
    BH_F_DEFAULT = 1 << 4,  /* absent: default_str / default_int / an empty object */
};

/* Checks a rule the types cannot express; path names v in the message. */
typedef int (*bh_resource_check_fn)(const cJSON *v, const char *path, struct bh_err *err);

struct bh_resource_field {
    const char *name; /* NULL ends a field list */
    enum bh_resource_type type;
    unsigned flags;
    double min, max;
    const char *const *enums;               /* NULL-terminated allowed strings */
    const struct bh_resource_field *fields; /* BH_T_OBJECT: children */
    const struct bh_resource_field *items;  /* BH_T_ARRAY: the element schema */
    bh_resource_check_fn check;             /* after the structural checks pass */
    const char *default_str;
    long default_int;
};

struct bh_resource_kind {
    const char *kind;
    const char *plural;
    const char *short_name;
    const struct bh_resource_field *spec; /* fields of spec */
    /* The finalizer the kind's controller needs on every object it may still clean up after
     * (added by bh_resource_validate unless the object is being deleted), or NULL. */
    const char *finalizer;
};

extern const struct bh_resource_field bh_resource_metadata_fields[];
/* Looks up one of the four kinds; NULL if unknown. */
const struct bh_resource_kind *bh_resource_kind_find(const char *kind);
/* "BoilerhouseWorkload, BoilerhousePool, ..." for error messages. */
const char *bh_resource_kind_names(void);

#endif
