/* The S3 plugin's SigV4 signer against AWS's published examples: the "get-vanilla" case of
 * the Signature Version 4 test suite, and the GetObject, PutObject and GetBucketLifecycle
 * examples of the S3 API reference (expected values copied from that documentation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sigv4.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* The S3 reference's example credentials (the test suite's differ in one character). */
#define S3_DOC_KEY_ID "AKIAIOSFODNN7EXAMPLE"
#define S3_DOC_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

/* A request of the S3 reference's examples: their date, region, service and credentials. */
static struct s3_sign_req s3_doc_req(const char *method, const char *uri, const char *query,
                                     const struct s3_header *h, size_t n, const char *payload)
{
    return (struct s3_sign_req){.method = method,
                                .uri = uri,
                                .query = query,
                                .headers = h,
                                .n_headers = n,
                                .payload_hash = payload,
                                .amz_date = "20130524T000000Z",
                                .region = "us-east-1",
                                .service = "s3",
                                .access_key = S3_DOC_KEY_ID,
                                .secret_key = S3_DOC_SECRET};
}

static void test_get_vanilla(void **state)
{
    const struct s3_header h[] = {{"host", "example.amazonaws.com"},
                                  {"x-amz-date", "20150830T123600Z"}};
    struct s3_sign_req r = {.method = "GET",
                            .uri = "/",
                            .query = "",
                            .headers = h,
                            .n_headers = 2,
                            .payload_hash = EMPTY_SHA256,
                            .amz_date = "20150830T123600Z",
                            .region = "us-east-1",
                            .service = "service",
                            .access_key = "AKIDEXAMPLE",
                            .secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"};
    char hash[S3_HEX_SHA256_LEN], sig[S3_HEX_SHA256_LEN], auth[512];
    assert_int_equal(s3_sigv4_canonical_hash(&r, hash), 0);
    assert_string_equal(hash, "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
    assert_int_equal(s3_sigv4_signature(&r, sig), 0);
    assert_string_equal(sig, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    assert_int_equal(s3_sigv4_authorization(&r, auth, sizeof(auth)), 0);
    assert_string_equal(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                              "aws4_request, SignedHeaders=host;x-amz-date, Signature="
                              "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

static void test_s3_get_object_range(void **state)
{
    const struct s3_header h[] = {{"host", "examplebucket.s3.amazonaws.com"},
                                  {"range", "bytes=0-9"},
                                  {"x-amz-content-sha256", EMPTY_SHA256},
                                  {"x-amz-date", "20130524T000000Z"}};
    struct s3_sign_req r = s3_doc_req("GET", "/test.txt", "", h, 4, EMPTY_SHA256);
    char hash[S3_HEX_SHA256_LEN], sig[S3_HEX_SHA256_LEN];
    assert_int_equal(s3_sigv4_canonical_hash(&r, hash), 0);
    assert_string_equal(hash, "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    assert_int_equal(s3_sigv4_signature(&r, sig), 0);
    assert_string_equal(sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void test_s3_put_object(void **state)
{
    static const char body[] = "Welcome to Amazon S3.";
    char payload[S3_HEX_SHA256_LEN], uri[64], sig[S3_HEX_SHA256_LEN];
    s3_sha256_hex(body, strlen(body), payload);
    assert_string_equal(payload,
                        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    assert_int_equal(s3_uri_encode("/test$file.text", 1, uri, sizeof(uri)), 0);
    assert_string_equal(uri, "/test%24file.text");
    const struct s3_header h[] = {{"date", "Fri, 24 May 2013 00:00:00 GMT"},
                                  {"host", "examplebucket.s3.amazonaws.com"},
                                  {"x-amz-content-sha256", payload},
                                  {"x-amz-date", "20130524T000000Z"},
                                  {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
    struct s3_sign_req r = s3_doc_req("PUT", uri, "", h, 5, payload);
    assert_int_equal(s3_sigv4_signature(&r, sig), 0);
    assert_string_equal(sig, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static void test_s3_get_bucket_lifecycle(void **state)
{
    const struct s3_header h[] = {{"host", "examplebucket.s3.amazonaws.com"},
                                  {"x-amz-content-sha256", EMPTY_SHA256},
                                  {"x-amz-date", "20130524T000000Z"}};
    struct s3_sign_req r = s3_doc_req("GET", "/", "lifecycle=", h, 3, EMPTY_SHA256);
    char sig[S3_HEX_SHA256_LEN];
    assert_int_equal(s3_sigv4_signature(&r, sig), 0);
    assert_string_equal(sig, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

static void test_uri_encode(void **state)
{
    char out[64];
    assert_int_equal(s3_uri_encode("a b/c~d*e", 0, out, sizeof(out)), 0);
    assert_string_equal(out, "a%20b%2Fc~d%2Ae");
    assert_int_equal(s3_uri_encode("w/t-1.snap", 1, out, sizeof(out)), 0);
    assert_string_equal(out, "w/t-1.snap");
    assert_int_equal(s3_uri_encode("////", 0, out, 8), -1); /* does not fit */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_vanilla),   cmocka_unit_test(test_s3_get_object_range),
        cmocka_unit_test(test_s3_put_object), cmocka_unit_test(test_s3_get_bucket_lifecycle),
        cmocka_unit_test(test_uri_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
