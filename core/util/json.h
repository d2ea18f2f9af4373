/* Small cJSON helpers: dotted-path lookups with defaults, and object builders. */
#ifndef BH_JSON_H
#define BH_JSON_H

#include <cjson/cJSON.h>

/* Item at a dotted path ("spec.network.access"), NULL if any step is missing. Borrowed. */
cJSON *bh_json_get(const cJSON *obj, const char *path);
/* String at path, or NULL if missing or not a string. Borrowed. */
const char *bh_json_str(const cJSON *obj, const char *path);
/* Number at path as long long, or def. */
long long bh_json_int(const cJSON *obj, const char *path, long long def);
double bh_json_num(const cJSON *obj, const char *path, double def);
int bh_json_bool(const cJSON *obj, const char *path, int def);
/* metadata.labels[key] (label keys contain dots, so no dotted path), or NULL. Borrowed. */
const char *bh_json_label(const cJSON *obj, const char *key);
/* Object at path, created (with parents) if missing. Borrowed. */
cJSON *bh_json_obj(cJSON *obj, const char *path);
/* Sets key in obj to a string / number, replacing any old value (value and key may be
 * borrowed from the item they replace). A NULL string removes the key. */
void bh_json_set_str(cJSON *obj, const char *key, const char *value);
void bh_json_set_num(cJSON *obj, const char *key, double value);
/* Compact text of item (owned). */
char *bh_json_print(const cJSON *item);

#endif
