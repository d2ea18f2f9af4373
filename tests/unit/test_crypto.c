#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "fs.h"
#include "mem.h"

static void test_hkdf_rfc5869_case1(void **state)
{
    uint8_t ikm[22], salt[13], info[10], okm[42];
    memset(ikm, 0x0b, sizeof(ikm));
    for (int i = 0; i < 13; i++)
        salt[i] = (uint8_t)i;
    for (int i = 0; i < 10; i++)
        info[i] = (uint8_t)(0xf0 + i);
    static const uint8_t want[42] = {
        0x3c, 0xb2, 0x5f, 0x25, 0xfa, 0xac, 0xd5, 0x7a, 0x90, 0x43, 0x4f, 0x64, 0xd0, 0x36,
        0x2f, 0x2a, 0x2d, 0x2d, 0x0a, 0x90, 0xcf, 0x1a, 0x5a, 0x4c, 0x5d, 0xb0, 0x2d, 0x56,
        0xec, 0xc4, 0xc5, 0xbf, 0x34, 0x00, 0x72, 0x08, 0xd5, 0xb8, 0x87, 0x18, 0x58, 0x65};
    struct bh_err err;
    assert_int_equal(bh_crypto_hkdf(ikm, sizeof(ikm), salt, sizeof(salt), info, sizeof(info), okm,
                                    sizeof(okm), &err),
                     0);
    assert_memory_equal(okm, want, sizeof(want));
}

static void test_derive_depends_on_context(void **state)
{
    uint8_t master[BH_KEY_LEN] = {1}, salt[16] = {2}, a[BH_KEY_LEN], b[BH_KEY_LEN];
    struct bh_err err;
    assert_int_equal(bh_crypto_derive(master, salt, 16, "one", a, &err), 0);
    assert_int_equal(bh_crypto_derive(master, salt, 16, "two", b, &err), 0);
    assert_memory_not_equal(a, b, BH_KEY_LEN);
}

static void test_seal_open(void **state)
{
    uint8_t key[BH_KEY_LEN] = {7}, nonce[BH_GCM_NONCE_LEN] = {0}, tag[BH_GCM_TAG_LEN];
    char buf[6] = "hello", out[6];
    struct bh_err err;
    assert_int_equal(bh_crypto_seal(key, nonce, "ad", 2, buf, 6, buf, tag, &err), 0);
    assert_memory_not_equal(buf, "hello", 6);
    assert_int_equal(bh_crypto_open(key, nonce, "ad", 2, buf, 6, out, tag, &err), 0);
    assert_string_equal(out, "hello");
    assert_int_equal(bh_crypto_open(key, nonce, "aD", 2, buf, 6, out, tag, &err), -1);
    assert_int_equal(err.code, BH_EINVAL);
    key[0] ^= 1;
    assert_int_equal(bh_crypto_open(key, nonce, "ad", 2, buf, 6, out, tag, &err), -1);
}

static void test_master_key_env(void **state)
{
    uint8_t key[BH_KEY_LEN], want[BH_KEY_LEN];
    for (int i = 0; i < BH_KEY_LEN; i++)
        want[i] = (uint8_t)i;
    struct bh_err err;
    setenv("BOILERHOUSE_SECRET_KEY",
           "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F", 1);
    assert_int_equal(bh_crypto_master_key("/nonexistent", key, &err), 0);
    assert_memory_equal(key, want, BH_KEY_LEN);
    setenv("BOILERHOUSE_SECRET_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1);
    assert_int_equal(bh_crypto_master_key("/nonexistent", key, &err), 0);
    assert_memory_equal(key, want, BH_KEY_LEN);
    static const char *bad[] = {"0001", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
                                "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"};
    for (size_t i = 0; i < 3; i++) {
        setenv("BOILERHOUSE_SECRET_KEY", bad[i], 1);
        assert_int_equal(bh_crypto_master_key("/nonexistent", key, &err), -1);
        assert_int_equal(err.code, BH_EINVAL);
    }
    unsetenv("BOILERHOUSE_SECRET_KEY");
}

struct race {
    const char *dir;
    uint8_t key[BH_KEY_LEN];
    int rc;
};

static void *race_thread(void *arg)
{
    struct race *r = arg;
    struct bh_err err;
    r->rc = bh_crypto_master_key(r->dir, r->key, &err);
    return NULL;
}

static void test_master_key_file(void **state)
{
    unsetenv("BOILERHOUSE_SECRET_KEY");
    char dir[] = "/tmp/bh-test-crypto-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct race r[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct race){.dir = dir};
        assert_int_equal(pthread_create(&t[i], NULL, race_thread, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].rc, 0);
        assert_memory_equal(r[i].key, r[0].key, BH_KEY_LEN);
    }
    bh_autofree char *path = bh_xasprintf("%s/master.key", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, BH_KEY_LEN);
    uint8_t again[BH_KEY_LEN];
    struct bh_err err;
    assert_int_equal(bh_crypto_master_key(dir, again, &err), 0);
    assert_memory_equal(again, r[0].key, BH_KEY_LEN);
    chmod(path, 0644);
    assert_int_equal(bh_crypto_master_key(dir, again, &err), -1);
    assert_int_equal(bh_fs_rmtree(dir, &err), 0);
}

static void test_sha256_file(void **state)
{
    char path[] = "/tmp/bh-test-sha-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    close(fd);
    char hex[65];
    struct bh_err err;
    assert_int_equal(bh_crypto_sha256_file(path, hex, &err), 0);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    unlink(path);
}

/* RFC 4648 §10 vectors, a malformed input, and the bearer check the listeners share. */
static void test_base64_and_bearer(void **state)
{
    static const char *const vec[][2] = {{"", ""},
                                         {"f", "Zg=="},
                                         {"fo", "Zm8="},
                                         {"foo", "Zm9v"},
                                         {"foob", "Zm9vYg=="},
                                         {"fooba", "Zm9vYmE="},
                                         {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        char *enc = bh_crypto_base64(vec[i][0], strlen(vec[i][0]));
        assert_string_equal(enc, vec[i][1]);
        size_t len = 99;
        unsigned char *dec = bh_crypto_unbase64(enc, &len);
        assert_non_null(dec);
        assert_int_equal(len, strlen(vec[i][0]));
        assert_string_equal((char *)dec, vec[i][0]);
        free(dec);
        free(enc);
    }
    size_t len;
    assert_null(bh_crypto_unbase64("Zm9", &len));  /* not a multiple of 4 */
    assert_null(bh_crypto_unbase64("Zm9!", &len)); /* not the alphabet */
    assert_true(bh_crypto_bearer_matches("Bearer s3cret", "s3cret"));
    assert_false(bh_crypto_bearer_matches("Bearer s3cre", "s3cret"));
    assert_false(bh_crypto_bearer_matches("Bearer s3cretX", "s3cret"));
    assert_false(bh_crypto_bearer_matches("Basic s3cret", "s3cret"));
    assert_false(bh_crypto_bearer_matches(NULL, "s3cret"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hkdf_rfc5869_case1), cmocka_unit_test(test_derive_depends_on_context),
        cmocka_unit_test(test_seal_open),          cmocka_unit_test(test_master_key_env),
        cmocka_unit_test(test_master_key_file),    cmocka_unit_test(test_sha256_file),
        cmocka_unit_test(test_base64_and_bearer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
