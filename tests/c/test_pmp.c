/*
 * C test of the pmp-core C API (include/pmp.h), linked against the static library.
 *
 * Built and run by tests/c_api.rs (`cargo test --workspace`), with
 * -std=c11 -Wall -Wextra -Werror -pedantic, once plainly and once with
 * -fsanitize=address,undefined. PMP_EXPECTED_VERSION is defined on the command line.
 *
 * KCV vectors: tests/data/kcv.txt (generated with psec 1.3.0 and pyca/cryptography).
 */
#include "pmp.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <threads.h>

#ifndef PMP_EXPECTED_VERSION
#error "define PMP_EXPECTED_VERSION"
#endif

static int passed;
static int failed;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (cond) {                                                          \
            passed++;                                                        \
        } else {                                                             \
            failed++;                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
        }                                                                    \
    } while (0)

#define CHECK_STATUS(expr, expected)                                          \
    do {                                                                      \
        pmp_status got_ = (expr);                                             \
        if (got_ == (expected)) {                                             \
            passed++;                                                         \
        } else {                                                              \
            failed++;                                                         \
            fprintf(stderr, "%s:%d: %s returned %u, expected %s (%u)\n",      \
                    __FILE__, __LINE__, #expr, (unsigned)got_, #expected,     \
                    (unsigned)(expected));                                    \
        }                                                                     \
    } while (0)

/* Decodes even-length hex into out (which holds cap bytes); returns the length. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap) {
    size_t n = strlen(hex) / 2;
    size_t i;
    if (n > cap) {
        fprintf(stderr, "unhex: %s is too long\n", hex);
        return 0;
    }
    for (i = 0; i < n; i++) {
        unsigned int byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) {
            return 0;
        }
        out[i] = (uint8_t)byte;
    }
    return n;
}

static void last_error(char *buf, size_t cap) {
    size_t written = 0;
    buf[0] = '\0';
    CHECK_STATUS(pmp_last_error_message((uint8_t *)buf, cap, &written), PMP_STATUS_OK);
    CHECK(written == strlen(buf));
}

static void test_version(void) {
    const char *v = pmp_version();
    CHECK(v != NULL);
    CHECK(v != NULL && strcmp(v, PMP_EXPECTED_VERSION) == 0);
    CHECK(pmp_version() == v); /* static, same pointer every time */
}

struct kcv_vector {
    pmp_algorithm algorithm;
    const char *key;
    const char *kcv;
};

static void test_kcv_vectors(void) {
    static const struct kcv_vector vectors[] = {
        {PMP_ALGORITHM_TDES, "D9EA0251738F3EF10885642FAB7AC2F8", "B53005"},
        {PMP_ALGORITHM_TDES, "A2DABF0B079E49EAB9A7912C9E153D466EABFD52C73D5E5E", "6397EF"},
        {PMP_ALGORITHM_AES, "1E89AC67E4B0D6EA892F94CC50FCFF90", "91E9C43E5F"},
        {PMP_ALGORITHM_AES, "CE696BC4113CB03E5BE868737BC0B49C0F0CD1C38CFB1D96A02BC5B5387A4695",
         "1A33A88FF0"},
    };
    size_t i;
    for (i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        uint8_t key[32], expected[5], out[8];
        size_t key_len = unhex(vectors[i].key, key, sizeof key);
        size_t kcv_len = unhex(vectors[i].kcv, expected, sizeof expected);
        size_t written = 0;
        CHECK_STATUS(pmp_kcv(vectors[i].algorithm, key, key_len, out, sizeof out, &written),
                     PMP_STATUS_OK);
        CHECK(written == kcv_len);
        CHECK(memcmp(out, expected, kcv_len) == 0);

        /* An exactly sized buffer is enough. */
        written = 0;
        CHECK_STATUS(pmp_kcv(vectors[i].algorithm, key, key_len, out, kcv_len, &written),
                     PMP_STATUS_OK);
        CHECK(written == kcv_len);
    }
}

static const char TDES_KEY[] = "D9EA0251738F3EF10885642FAB7AC2F8";

static void test_null_arguments(void) {
    uint8_t key[16], out[8];
    size_t written = 99;
    char message[256];
    unhex(TDES_KEY, key, sizeof key);
    memset(out, 0xAA, sizeof out);

    CHECK_STATUS(pmp_kcv(PMP_ALGORITHM_TDES, NULL, 16, out, sizeof out, &written),
                 PMP_STATUS_NULL_ARGUMENT);
    last_error(message, sizeof message);
    CHECK(strstr(message, "`key`") != NULL);

    CHECK_STATUS(pmp_kcv(PMP_ALGORITHM_TDES, key, sizeof key, NULL, sizeof out, &written),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_kcv(PMP_ALGORITHM_TDES, key, sizeof key, out, sizeof out, NULL),
                 PMP_STATUS_NULL_ARGUMENT);
    last_error(message, sizeof message);
    CHECK(strstr(message, "`out_written`") != NULL);

    /* Nothing was written by the failed calls. */
    CHECK(written == 99);
    CHECK(out[0] == 0xAA);

    CHECK_STATUS(pmp_last_error_message(NULL, 10, &written), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_last_error_message((uint8_t *)message, sizeof message, NULL),
                 PMP_STATUS_NULL_ARGUMENT);
}

static void test_short_buffer(void) {
    uint8_t key[16], out[8];
    size_t written = 0;
    unhex(TDES_KEY, key, sizeof key);
    memset(out, 0xAA, sizeof out);

    CHECK_STATUS(pmp_kcv(PMP_ALGORITHM_TDES, key, sizeof key, out, 2, &written),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(written == 3); /* the size needed */
    CHECK(out[0] == 0xAA && out[1] == 0xAA);

    /* out = NULL with capacity 0 asks for the size. */
    written = 0;
    CHECK_STATUS(pmp_kcv(PMP_ALGORITHM_AES, key, sizeof key, NULL, 0, &written),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(written == 5);
}

static void test_bad_arguments(void) {
    uint8_t key[16], out[8];
    size_t written = 99;
    char message[256];
    unhex(TDES_KEY, key, sizeof key);

    CHECK_STATUS(pmp_kcv(PMP_ALGORITHM_TDES, key, 8, out, sizeof out, &written),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK(written == 99);
    last_error(message, sizeof message);
    CHECK(strstr(message, "key length") != NULL);
    /* Error messages never repeat key material. */
    CHECK(strstr(message, "D9EA") == NULL && strstr(message, "d9ea") == NULL);

    CHECK_STATUS(pmp_kcv(PMP_ALGORITHM_AES, key, 0, out, sizeof out, &written),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_kcv((pmp_algorithm)7, key, sizeof key, out, sizeof out, &written),
                 PMP_STATUS_INVALID_ARGUMENT);
    last_error(message, sizeof message);
    CHECK(strstr(message, "algorithm") != NULL);
    CHECK(written == 99);
}

static int other_thread_message(void *arg) {
    char *message = arg;
    size_t written = 0;
    return pmp_last_error_message((uint8_t *)message, 256, &written) == PMP_STATUS_OK &&
                   written == 0
               ? 0
               : 1;
}

static void test_last_error(void) {
    uint8_t key[16], out[8];
    size_t written = 0, needed = 0;
    char message[256], again[256], tiny[4];
    thrd_t thread;
    int thread_result = -1;
    unhex(TDES_KEY, key, sizeof key);

    CHECK_STATUS(pmp_kcv(PMP_ALGORITHM_TDES, key, 15, out, sizeof out, &written),
                 PMP_STATUS_INVALID_ARGUMENT);
    last_error(message, sizeof message);
    CHECK(strlen(message) > 0);

    /* A short buffer reports the capacity needed (with the NUL) and keeps the message. */
    memset(tiny, 'x', sizeof tiny);
    CHECK_STATUS(pmp_last_error_message((uint8_t *)tiny, sizeof tiny, &needed),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed == strlen(message) + 1);
    CHECK(tiny[0] == 'x');
    CHECK_STATUS(pmp_last_error_message(NULL, 0, &needed), PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed == strlen(message) + 1);
    last_error(again, sizeof again);
    CHECK(strcmp(message, again) == 0);

    /* A successful call leaves the last error as it was (like errno). */
    CHECK_STATUS(pmp_kcv(PMP_ALGORITHM_TDES, key, sizeof key, out, sizeof out, &written),
                 PMP_STATUS_OK);
    last_error(again, sizeof again);
    CHECK(strcmp(message, again) == 0);

    /* The last error is per thread: a new thread has none. */
    CHECK(thrd_create(&thread, other_thread_message, again) == thrd_success);
    CHECK(thrd_join(thread, &thread_result) == thrd_success);
    CHECK(thread_result == 0);
}

int main(void) {
    test_version();
    test_kcv_vectors();
    test_null_arguments();
    test_short_buffer();
    test_bad_arguments();
    test_last_error();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
