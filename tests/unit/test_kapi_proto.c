/* The OpenAPI v2 protobuf (core/kapi/kapi_proto.c) kubectl before 1.27 reads: decoded here
 * field by field (gnostic's OpenAPIv2.proto numbers) and compared with the JSON document. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "kapi.h"
#include "mem.h"

struct span {
    const unsigned char *p, *end;
};

static uint64_t varint(struct span *s)
{
    uint64_t v = 0;
    for (int shift = 0; s->p < s->end; shift += 7) {
        unsigned char c = *s->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            break;
    }
    return v;
}

/* The n-th (0-based) length-delimited field number f of msg; fails the test if absent. */
static struct span field(struct span msg, int f, int n)
{
    while (msg.p < msg.end) {
        uint64_t tag = varint(&msg);
        if ((tag & 7) == 0) {
            varint(&msg);
            continue;
        }
        if ((tag & 7) == 1) {
            msg.p += 8;
            continue;
        }
        assert_int_equal(tag & 7, 2);
        uint64_t len = varint(&msg);
        struct span sub = {msg.p, msg.p + len};
        msg.p += len;
        if ((int)(tag >> 3) == f && n-- == 0)
            return sub;
    }
    fail_msg("field %d not found", f);
    return msg;
}

static int is(struct span s, const char *text)
{
    return (size_t)(s.end - s.p) == strlen(text) && !memcmp(s.p, text, strlen(text));
}

/* The NamedSchema (or NamedAny) of a repeated field f named name. */
static struct span named(struct span msg, int f, const char *name)
{
    for (int i = 0;; i++) {
        struct span e = field(msg, f, i);
        if (is(field(e, 1, 0), name))
            return field(e, 2, 0);
    }
}

static void test_openapi_document(void **state)
{
    (void)state;
    cJSON *doc = cJSON_Parse(
        "{\"swagger\":\"2.0\",\"info\":{\"title\":\"t\",\"version\":\"1\"},"
        "\"paths\":{\"/apis/x\":{\"patch\":{\"parameters\":[{\"name\":\"dryRun\",\"in\":\"query\","
        "\"type\":\"string\"}],\"responses\":{\"200\":{\"description\":\"OK\"}},"
        "\"x-kubernetes-group-version-kind\":{\"group\":\"g\",\"kind\":\"K\",\"version\":\"v\"}}}},"
        "\"definitions\":{\"g.v.K\":{\"type\":\"object\",\"description\":\"a K\","
        "\"properties\":{\"size\":{\"type\":\"integer\",\"minimum\":0,\"description\":\"how "
        "many\"},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
        "\"required\":[\"size\"],"
        "\"x-kubernetes-group-version-kind\":[{\"group\":\"g\",\"kind\":\"K\",\"version\":\"v\"}]}}"
        "}");
    char *out = NULL;
    size_t len = 0;
    bh_kapi_proto_openapi(doc, &out, &len);
    struct span d = {(const unsigned char *)out, (const unsigned char *)out + len};
    assert_true(is(field(d, 1, 0), "2.0"));
    assert_true(is(field(field(d, 2, 0), 1, 0), "t"));
    /* definitions -> NamedSchema g.v.K -> Schema */
    struct span k = named(field(d, 9, 0), 1, "g.v.K");
    assert_true(is(field(k, 4, 0), "a K"));
    assert_true(is(field(field(k, 22, 0), 1, 0), "object"));
    assert_true(is(field(k, 19, 0), "size"));
    struct span gvk = named(k, 31, "x-kubernetes-group-version-kind");
    assert_true(is(field(gvk, 2, 0), "[{\"group\":\"g\",\"kind\":\"K\",\"version\":\"v\"}]"));
    struct span size = named(field(k, 25, 0), 1, "size");
    assert_true(is(field(size, 4, 0), "how many"));
    struct span tags = named(field(k, 25, 0), 1, "tags");
    assert_true(is(field(field(field(field(tags, 23, 0), 1, 0), 22, 0), 1, 0), "string"));
    /* paths -> NamedPathItem -> PathItem.patch -> parameters[0] ... QueryParameterSubSchema */
    struct span item = named(field(d, 8, 0), 2, "/apis/x");
    struct span op = field(item, 8, 0);
    struct span q = field(field(field(field(op, 8, 0), 1, 0), 2, 0), 3, 0);
    assert_true(is(field(q, 4, 0), "dryRun"));
    assert_true(is(field(q, 2, 0), "query"));
    /* responses -> NamedResponseValue 200 -> ResponseValue -> Response.description */
    assert_true(is(field(field(named(field(op, 9, 0), 1, "200"), 1, 0), 1, 0), "OK"));
    (void)named(op, 13, "x-kubernetes-group-version-kind");
    free(out);
    cJSON_Delete(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_openapi_document)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
