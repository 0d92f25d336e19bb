/*
 * C test of the pmp-core C API (include/pmp.h), linked against the static library.
 *
 * Built and run by tests/c_api.rs (`cargo test --workspace`), with
 * -std=c11 -Wall -Wextra -Werror -pedantic, once plainly and once with
 * -fsanitize=address,undefined. PMP_EXPECTED_VERSION and PMP_TEST_DATA (the path of
 * tests/data) are defined on the command line; argv[1] is an empty scratch directory.
 *
 * Every function of pmp.h is called here, with its misuse cases: NULL arguments, short
 * buffers, unknown enum values, wrong key usage, bad input (key blocks, PIN blocks, MACs,
 * tampered key-store and audit files). test_threads() translates from several threads on
 * one HSM handle.
 *
 * Vectors: KCVs from tests/data/kcv.txt (psec 1.3.0 and pyca/cryptography); AES-CMAC from
 * RFC 4493 section 4, examples 1 and 2; tests/data/xof/example.xof and its keys from
 * docs/xof.md section 8.
 */
#include "pmp.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#ifndef PMP_EXPECTED_VERSION
#error "define PMP_EXPECTED_VERSION"
#endif
#ifndef PMP_TEST_DATA
#error "define PMP_TEST_DATA"
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
    CHECK_STATUS(pmp_last_error_message(buf, cap, &written), PMP_STATUS_OK);
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
        uint8_t key[32];
        char out[PMP_KCV_CAP];
        size_t key_len = unhex(vectors[i].key, key, sizeof key);
        size_t kcv_len = strlen(vectors[i].kcv);
        size_t written = 0;
        /* Hex text, like every other KCV of the API (ABI 2). */
        CHECK_STATUS(pmp_kcv(vectors[i].algorithm, key, key_len, out, sizeof out, &written),
                     PMP_STATUS_OK);
        CHECK(written == kcv_len);
        CHECK(strcmp(out, vectors[i].kcv) == 0);

        /* An exactly sized buffer (the digits and the NUL) is enough. */
        written = 0;
        CHECK_STATUS(pmp_kcv(vectors[i].algorithm, key, key_len, out, kcv_len + 1, &written),
                     PMP_STATUS_OK);
        CHECK(written == kcv_len);
        CHECK_STATUS(pmp_kcv(vectors[i].algorithm, key, key_len, out, kcv_len, &written),
                     PMP_STATUS_BUFFER_TOO_SMALL);
        CHECK(written == kcv_len + 1);
    }
}

static const char TDES_KEY[] = "D9EA0251738F3EF10885642FAB7AC2F8";

static void test_null_arguments(void) {
    uint8_t key[16];
    char out[PMP_KCV_CAP];
    size_t written = 99;
    char message[256];
    unhex(TDES_KEY, key, sizeof key);
    memset(out, 'x', sizeof out);

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
    CHECK(out[0] == 'x');

    CHECK_STATUS(pmp_last_error_message(NULL, 10, &written), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_last_error_message(message, sizeof message, NULL),
                 PMP_STATUS_NULL_ARGUMENT);
}

static void test_short_buffer(void) {
    uint8_t key[16];
    char out[PMP_KCV_CAP];
    size_t written = 0;
    unhex(TDES_KEY, key, sizeof key);
    memset(out, 'x', sizeof out);

    CHECK_STATUS(pmp_kcv(PMP_ALGORITHM_TDES, key, sizeof key, out, 2, &written),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(written == 7); /* the size needed: 6 hex digits and the NUL */
    CHECK(out[0] == 'x' && out[1] == 'x');

    /* out = NULL with capacity 0 asks for the size. */
    written = 0;
    CHECK_STATUS(pmp_kcv(PMP_ALGORITHM_AES, key, sizeof key, NULL, 0, &written),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(written == 11);
}

static void test_bad_arguments(void) {
    uint8_t key[16];
    char out[PMP_KCV_CAP];
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

    /* A value of another enum type passed as an algorithm is refused, not read as one:
     * every type has its own range (PMP_MODE_CBC was 2 == PMP_ALGORITHM_AES before ABI 2). */
    CHECK_STATUS(pmp_kcv((pmp_algorithm)PMP_MODE_CBC, key, sizeof key, out, sizeof out, &written),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_kcv((pmp_algorithm)PMP_PIN_FORMAT_ISO0, key, sizeof key, out, sizeof out,
                         &written),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_kcv((pmp_algorithm)0, key, sizeof key, out, sizeof out, &written),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK(written == 99);
}

/* The value ranges of the enum-like types are apart, and 0 is no value of any (a static
 * check: this file does not compile otherwise). */
_Static_assert(PMP_ALGORITHM_AES != PMP_MODE_CBC, "algorithm and mode values overlap");
_Static_assert((PMP_ALGORITHM_TDES >> 8) == 1 && (PMP_ALGORITHM_AES >> 8) == 1, "algorithms");
_Static_assert((PMP_MODE_ECB >> 8) == 2 && (PMP_MODE_CBC >> 8) == 2, "modes");
_Static_assert((PMP_PADDING_NONE >> 8) == 3 && (PMP_PADDING_PKCS7 >> 8) == 3, "paddings");
_Static_assert((PMP_MAC_RETAIL >> 8) == 4 && (PMP_MAC_CMAC_AES >> 8) == 4, "MAC algorithms");
_Static_assert((PMP_PIN_FORMAT_ISO0 >> 8) == 5 && (PMP_PIN_FORMAT_ISO4 >> 8) == 5,
               "PIN block formats");
_Static_assert(PMP_ABI_VERSION == 3, "this test is written for ABI version 3");

static int other_thread_message(void *arg) {
    char *message = arg;
    size_t written = 0;
    return pmp_last_error_message(message, 256, &written) == PMP_STATUS_OK &&
                   written == 0
               ? 0
               : 1;
}

static void test_last_error(void) {
    uint8_t key[16];
    char out[PMP_KCV_CAP];
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
    CHECK_STATUS(pmp_last_error_message(tiny, sizeof tiny, &needed),
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

    /* The truncating variant cuts a long message instead of losing it (like snprintf). */
    memset(tiny, 'x', sizeof tiny);
    needed = 0;
    CHECK_STATUS(pmp_last_error_text(tiny, sizeof tiny, &needed), PMP_STATUS_OK);
    CHECK(needed == strlen(message));
    CHECK(tiny[3] == '\0' && strncmp(tiny, message, 3) == 0);
    CHECK_STATUS(pmp_last_error_text(again, sizeof again, NULL), PMP_STATUS_OK);
    CHECK(strcmp(message, again) == 0);
    CHECK_STATUS(pmp_last_error_text(NULL, 0, &needed), PMP_STATUS_OK);
    CHECK(needed == strlen(message));
    CHECK_STATUS(pmp_last_error_text(NULL, 4, &needed), PMP_STATUS_NULL_ARGUMENT);

    /* The last error is per thread: a new thread has none. */
    CHECK(thrd_create(&thread, other_thread_message, again) == thrd_success);
    CHECK(thrd_join(thread, &thread_result) == thrd_success);
    CHECK(thread_result == 0);
}


/* ------------------------------------------------------------------------------------
 * Helpers for the HSM tests
 * ------------------------------------------------------------------------------------ */

static const char *base_dir;
static pmp_hsm *bureau;  /* TEST store shared by the key and crypto tests */
static pmp_hsm *partner; /* a second TEST store: the other side of a key exchange */

/* base_dir/name, in one of 8 rotating buffers. */
static const char *path(const char *name) {
    static char bufs[8][1024];
    static int next;
    char *buf = bufs[next++ % 8];
    snprintf(buf, sizeof bufs[0], "%s/%s", base_dir, name);
    return buf;
}

static void to_hex(const uint8_t *bytes, size_t n, char *out) {
    size_t i;
    for (i = 0; i < n; i++) {
        snprintf(out + 2 * i, 3, "%02X", bytes[i]);
    }
    out[2 * n] = '\0';
}

static int message_has(const char *needle) {
    char message[512];
    last_error(message, sizeof message);
    return strstr(message, needle) != NULL;
}

static int message_contains(const char *needle) {
    char message[512];
    last_error(message, sizeof message);
    if (strstr(message, needle) == NULL) {
        fprintf(stderr, "last error \"%s\" does not contain \"%s\"\n", message, needle);
        return 0;
    }
    return 1;
}

static pmp_key_spec key_spec(const char *label, pmp_algorithm algorithm, size_t length,
                             const char *usage, const char *mode_of_use,
                             const char *exportability) {
    pmp_key_spec s;
    s.label = label;
    s.algorithm = algorithm;
    s.length = length;
    s.usage = usage;
    s.mode_of_use = mode_of_use;
    s.exportability = exportability;
    return s;
}

static pmp_cipher_spec cipher(const char *key, pmp_mode mode, const uint8_t *iv, size_t iv_len,
                              pmp_padding padding) {
    pmp_cipher_spec c;
    c.key = key;
    c.mode = mode;
    c.iv = iv;
    c.iv_len = iv_len;
    c.padding = padding;
    return c;
}

static pmp_component component(const uint8_t *key, size_t len, const char *kcv) {
    pmp_component c;
    c.key = key;
    c.key_len = len;
    c.kcv = kcv;
    return c;
}

/* The KCV of a clear key, as hex. */
static void kcv_hex(pmp_algorithm algorithm, const uint8_t *key, size_t len, char *out) {
    size_t written = 0;
    out[0] = '\0';
    CHECK_STATUS(pmp_kcv(algorithm, key, len, out, PMP_KCV_CAP, &written), PMP_STATUS_OK);
}

/* Two components whose XOR is `key`: c1 fixed, c2 = key ^ c1. */
static void split(const uint8_t *key, size_t len, uint8_t *c1, uint8_t *c2) {
    size_t i;
    for (i = 0; i < len; i++) {
        c1[i] = (uint8_t)(0x3C + 29 * i);
        c2[i] = (uint8_t)(key[i] ^ c1[i]);
    }
}

/* Forms `label` in `hsm` from two components of the clear `key` (a key both sides of a test
 * know), checking the KCVs on the way. */
static void form_known(pmp_hsm *hsm, const char *label, pmp_algorithm algorithm,
                       const uint8_t *key, size_t len, const char *usage, const char *mode) {
    uint8_t c1[32], c2[32];
    char k1[11], k2[11], expected[11];
    pmp_component comps[2];
    pmp_key_spec spec = key_spec(label, algorithm, len, usage, mode, "N");
    pmp_key_info info;
    split(key, len, c1, c2);
    kcv_hex(algorithm, c1, len, k1);
    kcv_hex(algorithm, c2, len, k2);
    kcv_hex(algorithm, key, len, expected);
    comps[0] = component(c1, len, k1);
    comps[1] = component(c2, len, k2);
    CHECK_STATUS(pmp_key_form(hsm, &spec, comps, 2, expected, &info), PMP_STATUS_OK);
    CHECK(strcmp(info.kcv, expected) == 0);
}

static int file_flip_byte(const char *file, long offset) {
    FILE *f = fopen(file, "r+b");
    int c;
    if (f == NULL) {
        return 0;
    }
    if (fseek(f, offset, SEEK_SET) != 0 || (c = fgetc(f)) == EOF ||
        fseek(f, offset, SEEK_SET) != 0) {
        fclose(f);
        return 0;
    }
    /* A second call at the same offset restores the byte. */
    fputc(c ^ 0x01, f);
    return fclose(f) == 0;
}

static int file_write(const char *file, const char *text) {
    FILE *f = fopen(file, "wb");
    if (f == NULL) {
        return 0;
    }
    fputs(text, f);
    return fclose(f) == 0;
}

/* Known clear keys (test values only). Odd parity for the TDES ones. */
static const uint8_t TDES_DATA_KEY[16] = {0xD9, 0xEA, 0x02, 0x51, 0x73, 0x8F, 0x3E, 0xF1,
                                          0x08, 0x85, 0x64, 0x2F, 0xAB, 0x7A, 0xC2, 0xF8};
static const uint8_t TDES_PIN_KEY_1[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                                           0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10};
static const uint8_t TDES_PIN_KEY_2[16] = {0x4C, 0x2A, 0x13, 0x8F, 0x6E, 0xB5, 0x07, 0xD3,
                                           0x94, 0x31, 0xE5, 0x7A, 0x0B, 0xC8, 0x52, 0x6D};
static const uint8_t AES_ZMK[32] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                    0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xF0, 0x0F,
                                    0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98,
                                    0xA9, 0xBA, 0xCB, 0xDC, 0xED, 0xFE, 0x0F, 0xF1};
/* RFC 4493 section 4: the AES-128 key of the examples. */
static const uint8_t RFC4493_KEY[16] = {0x2B, 0x7E, 0x15, 0x16, 0x28, 0xAE, 0xD2, 0xA6,
                                        0xAB, 0xF7, 0x15, 0x88, 0x09, 0xCF, 0x4F, 0x3C};

static const uint8_t PAN_DATA[] = "4111111111111111";
static const uint8_t IV8[8] = {0};
static const uint8_t IV16[16] = {0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7,
                                 0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF};

/* ------------------------------------------------------------------------------------
 * HSM handle
 * ------------------------------------------------------------------------------------ */

static void test_hsm_lifecycle(void) {
    int dummy = 0;
    pmp_hsm *hsm = NULL;
    pmp_hsm *untouched = (pmp_hsm *)&dummy;
    uint32_t is_test = 7;
    uint64_t entries = 0;
    const char *dir = path("lifecycle");

    CHECK_STATUS(pmp_hsm_init(dir, NULL, &hsm), PMP_STATUS_OK);
    CHECK(hsm != NULL);
    CHECK_STATUS(pmp_hsm_is_test(hsm, &is_test), PMP_STATUS_OK);
    CHECK(is_test == 1);
    CHECK_STATUS(pmp_hsm_verify_audit(hsm, &entries), PMP_STATUS_OK);
    CHECK(entries >= 1);
    CHECK_STATUS(pmp_hsm_is_test(hsm, NULL), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_hsm_verify_audit(hsm, NULL), PMP_STATUS_NULL_ARGUMENT);
    pmp_hsm_free(hsm);
    pmp_hsm_free(NULL); /* a no-op */

    /* A store is created once; opened many times. */
    CHECK_STATUS(pmp_hsm_init(dir, NULL, &untouched), PMP_STATUS_ALREADY_EXISTS);
    CHECK(untouched == (pmp_hsm *)&dummy);
    hsm = NULL;
    CHECK_STATUS(pmp_hsm_open(dir, NULL, &hsm), PMP_STATUS_OK);
    CHECK(hsm != NULL);
    pmp_hsm_free(hsm);

    CHECK_STATUS(pmp_hsm_open(path("no-such-store"), NULL, &untouched), PMP_STATUS_IO);
    CHECK(message_contains("no-such-store"));
    CHECK(untouched == (pmp_hsm *)&dummy);
    CHECK_STATUS(pmp_hsm_open(NULL, NULL, &untouched), PMP_STATUS_NULL_ARGUMENT);
    CHECK(message_contains("`dir`"));
    CHECK_STATUS(pmp_hsm_open(dir, NULL, NULL), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_hsm_init(NULL, NULL, &untouched), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_hsm_init(path("never"), NULL, NULL), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_hsm_open("\xff\xfe", NULL, &untouched), PMP_STATUS_INVALID_ARGUMENT);
    CHECK(message_contains("UTF-8"));
    CHECK_STATUS(pmp_hsm_is_test(NULL, &is_test), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_hsm_verify_audit(NULL, &entries), PMP_STATUS_NULL_ARGUMENT);
    CHECK(untouched == (pmp_hsm *)&dummy);
}

static void test_hsm_production_lmk(void) {
    uint8_t c1[32], c2[32], c3[32];
    char k1[11], k2[11];
    pmp_component comps[2], wrong[2];
    pmp_lmk lmk;
    pmp_hsm *hsm = NULL;
    uint32_t is_test = 7;
    const char *dir = path("production");
    size_t i;
    for (i = 0; i < 32; i++) {
        c1[i] = (uint8_t)(7 * i + 1);
        c2[i] = (uint8_t)(0xA5 ^ (13 * i));
        c3[i] = (uint8_t)(0x5A ^ (11 * i));
    }
    kcv_hex(PMP_ALGORITHM_AES, c1, 32, k1);
    kcv_hex(PMP_ALGORITHM_AES, c2, 32, k2);
    comps[0] = component(c1, 32, k1);
    comps[1] = component(c2, 32, k2);
    lmk.components = comps;
    lmk.count = 2;

    CHECK_STATUS(pmp_hsm_init(dir, &lmk, &hsm), PMP_STATUS_OK);
    CHECK_STATUS(pmp_hsm_is_test(hsm, &is_test), PMP_STATUS_OK);
    CHECK(is_test == 0);
    pmp_hsm_free(hsm);
    hsm = NULL;

    CHECK_STATUS(pmp_hsm_open(dir, &lmk, &hsm), PMP_STATUS_OK);
    CHECK(hsm != NULL);
    pmp_hsm_free(hsm);
    hsm = NULL;

    /* A production store refuses to be opened as a TEST store. */
    CHECK_STATUS(pmp_hsm_open(dir, NULL, &hsm), PMP_STATUS_POLICY);
    /* The wrong components: the LMK's KCV differs from the store's. */
    wrong[0] = component(c1, 32, NULL);
    wrong[1] = component(c3, 32, NULL);
    lmk.components = wrong;
    CHECK_STATUS(pmp_hsm_open(dir, &lmk, &hsm), PMP_STATUS_KCV_MISMATCH);
    /* A component that does not match its own KCV. */
    wrong[1] = component(c2, 32, k1);
    CHECK_STATUS(pmp_hsm_open(dir, &lmk, &hsm), PMP_STATUS_KCV_MISMATCH);
    CHECK(message_contains("component 2"));
    /* A malformed KCV. */
    wrong[1] = component(c2, 32, "not hex");
    CHECK_STATUS(pmp_hsm_open(dir, &lmk, &hsm), PMP_STATUS_INVALID_ARGUMENT);
    /* A component of the wrong length. */
    wrong[1] = component(c2, 16, NULL);
    CHECK(pmp_hsm_open(dir, &lmk, &hsm) == PMP_STATUS_INVALID_ARGUMENT);
    /* NULL component bytes. */
    wrong[1] = component(NULL, 32, NULL);
    CHECK_STATUS(pmp_hsm_open(dir, &lmk, &hsm), PMP_STATUS_NULL_ARGUMENT);
    lmk.count = 0;
    CHECK_STATUS(pmp_hsm_open(dir, &lmk, &hsm), PMP_STATUS_INVALID_ARGUMENT);
    lmk.components = NULL;
    lmk.count = 2;
    CHECK_STATUS(pmp_hsm_open(dir, &lmk, &hsm), PMP_STATUS_NULL_ARGUMENT);
    CHECK(hsm == NULL);
}

static void test_tampered_store(void) {
    pmp_hsm *hsm = NULL;
    pmp_key_spec spec = key_spec("K1", PMP_ALGORITHM_AES, 32, "D0", "B", "N");
    pmp_key_info info;
    const char *dir = path("tamper");
    char file[1100];

    CHECK_STATUS(pmp_hsm_init(dir, NULL, &hsm), PMP_STATUS_OK);
    CHECK_STATUS(pmp_key_generate(hsm, &spec, &info), PMP_STATUS_OK);
    pmp_hsm_free(hsm);
    hsm = NULL;

    /* A changed key file stops the open. */
    snprintf(file, sizeof file, "%s/keys/K1.kb", dir);
    CHECK(file_flip_byte(file, 40));
    CHECK_STATUS(pmp_hsm_open(dir, NULL, &hsm), PMP_STATUS_INTEGRITY_FAILURE);
    CHECK(message_contains("K1.kb"));
    CHECK(hsm == NULL);
    CHECK(file_flip_byte(file, 40)); /* back as it was */
    CHECK_STATUS(pmp_hsm_open(dir, NULL, &hsm), PMP_STATUS_OK);
    pmp_hsm_free(hsm);
    hsm = NULL;

    /* A changed audit log too. */
    snprintf(file, sizeof file, "%s/audit.log", dir);
    CHECK(file_flip_byte(file, 30));
    CHECK_STATUS(pmp_hsm_open(dir, NULL, &hsm), PMP_STATUS_INTEGRITY_FAILURE);
    CHECK(hsm == NULL);

    /* Garbage store metadata. */
    snprintf(file, sizeof file, "%s/store.meta", dir);
    CHECK(file_write(file, "this is not a key store\n"));
    CHECK(pmp_hsm_open(dir, NULL, &hsm) != PMP_STATUS_OK);
    CHECK(hsm == NULL);
}

/* ------------------------------------------------------------------------------------
 * Keys
 * ------------------------------------------------------------------------------------ */

static void test_keys(void) {
    pmp_key_spec spec = key_spec("DK-A", PMP_ALGORITHM_AES, 32, "D0", "B", "N");
    pmp_key_info info, found, sentinel, list[64];
    size_t n = 0, written = 0, i;
    char label65[66];

    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_OK);
    CHECK(strcmp(info.label, "DK-A") == 0);
    CHECK(info.algorithm == PMP_ALGORITHM_AES);
    CHECK(info.length == 32);
    CHECK(strcmp(info.usage, "D0") == 0);
    CHECK(strcmp(info.mode_of_use, "B") == 0);
    CHECK(strcmp(info.exportability, "N") == 0);
    CHECK(strlen(info.kcv) == 10);

    CHECK_STATUS(pmp_key_find(bureau, "DK-A", &found), PMP_STATUS_OK);
    CHECK(strcmp(found.label, info.label) == 0 && strcmp(found.kcv, info.kcv) == 0);
    CHECK(found.algorithm == info.algorithm && found.length == info.length);

    spec = key_spec("DK-E", PMP_ALGORITHM_AES, 16, "D0", "E", "N"); /* encrypt only */
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_OK);
    spec = key_spec("DK-3", PMP_ALGORITHM_TDES, 24, "D0", "B", "N");
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_OK);
    CHECK(info.algorithm == PMP_ALGORITHM_TDES && info.length == 24);
    CHECK(strlen(info.kcv) == 6);

    /* Misuse: nothing is written to out_info on failure. */
    memset(&sentinel, 0x5A, sizeof sentinel);
    memcpy(&info, &sentinel, sizeof info);
    spec = key_spec("DK-A", PMP_ALGORITHM_AES, 32, "D0", "B", "N");
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_ALREADY_EXISTS);
    CHECK(message_contains("DK-A"));
    spec.label = "bad label!";
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_INVALID_ARGUMENT);
    memset(label65, 'L', 65);
    label65[65] = '\0';
    spec.label = label65;
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_INVALID_ARGUMENT);
    spec.label = "";
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_INVALID_ARGUMENT);
    spec.label = "DK-NEW";
    spec.usage = "ZZ";
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_INVALID_ARGUMENT);
    CHECK(message_contains("usage"));
    spec.usage = "D";
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_INVALID_ARGUMENT);
    spec.usage = "D0";
    spec.mode_of_use = "Q";
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_INVALID_ARGUMENT);
    spec.mode_of_use = "BB";
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_INVALID_ARGUMENT);
    spec.mode_of_use = "B";
    spec.exportability = "X";
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_INVALID_ARGUMENT);
    spec.exportability = "N";
    spec.algorithm = 0;
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_INVALID_ARGUMENT);
    CHECK(message_contains("algorithm"));
    spec.algorithm = 99;
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_INVALID_ARGUMENT);
    spec.algorithm = PMP_ALGORITHM_AES;
    spec.length = 20;
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_INVALID_ARGUMENT);
    spec.length = 32;
    spec.mode_of_use = "V"; /* verify-only data key: meaningless for D0 */
    CHECK(pmp_key_generate(bureau, &spec, &info) == PMP_STATUS_POLICY);
    spec.mode_of_use = "B";
    spec.usage = NULL;
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_NULL_ARGUMENT);
    CHECK(message_contains("spec.usage"));
    spec.usage = "D0";
    spec.label = NULL;
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_NULL_ARGUMENT);
    spec.label = "DK-NEW";
    CHECK_STATUS(pmp_key_generate(bureau, NULL, &info), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_generate(NULL, &spec, &info), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_generate(bureau, &spec, NULL), PMP_STATUS_NULL_ARGUMENT);
    CHECK(memcmp(&info, &sentinel, sizeof info) == 0);
    CHECK_STATUS(pmp_key_find(bureau, "DK-NEW", &info), PMP_STATUS_NOT_FOUND);
    CHECK_STATUS(pmp_key_find(bureau, NULL, &info), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_find(bureau, "DK-A", NULL), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_find(NULL, "DK-A", &info), PMP_STATUS_NULL_ARGUMENT);
    CHECK(memcmp(&info, &sentinel, sizeof info) == 0);

    /* List: count first, then fetch; sorted by label. */
    CHECK_STATUS(pmp_key_list(bureau, NULL, 0, &n), PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(n >= 3 && n <= 64);
    list[0] = sentinel;
    CHECK_STATUS(pmp_key_list(bureau, list, n - 1, &written), PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(written == n);
    CHECK(memcmp(&list[0], &sentinel, sizeof sentinel) == 0);
    written = 0;
    CHECK_STATUS(pmp_key_list(bureau, list, 64, &written), PMP_STATUS_OK);
    CHECK(written == n);
    for (i = 1; i < written; i++) {
        CHECK(strcmp(list[i - 1].label, list[i].label) < 0);
    }
    for (i = 0; i < written && strcmp(list[i].label, "DK-A") != 0; i++) {
    }
    CHECK(i < written && strcmp(list[i].kcv, found.kcv) == 0);
    CHECK_STATUS(pmp_key_list(bureau, NULL, 5, &written), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_list(bureau, list, 64, NULL), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_list(NULL, list, 64, &written), PMP_STATUS_NULL_ARGUMENT);

    /* Delete. */
    spec = key_spec("TMP-DEL", PMP_ALGORITHM_AES, 16, "D0", "B", "N");
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &info), PMP_STATUS_OK);
    CHECK_STATUS(pmp_key_delete(bureau, "TMP-DEL"), PMP_STATUS_OK);
    CHECK_STATUS(pmp_key_find(bureau, "TMP-DEL", &info), PMP_STATUS_NOT_FOUND);
    CHECK_STATUS(pmp_key_delete(bureau, "TMP-DEL"), PMP_STATUS_NOT_FOUND);
    CHECK_STATUS(pmp_key_delete(bureau, NULL), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_delete(NULL, "DK-A"), PMP_STATUS_NULL_ARGUMENT);
}

static void test_components(void) {
    uint8_t c1[24], c2[24], c3[24], degenerate[16];
    char k1[11], k2[11], expected[11];
    pmp_component comps[3];
    pmp_key_spec spec = key_spec("ZMK-T", PMP_ALGORITHM_TDES, 16, "K0", "B", "N");
    pmp_key_info info;
    size_t i;

    split(TDES_DATA_KEY, 16, c1, c2);
    kcv_hex(PMP_ALGORITHM_TDES, c1, 16, k1);
    kcv_hex(PMP_ALGORITHM_TDES, c2, 16, k2);
    kcv_hex(PMP_ALGORITHM_TDES, TDES_DATA_KEY, 16, expected);
    CHECK(strcmp(expected, "B53005") == 0); /* tests/data/kcv.txt */

    /* A wrong KCV anywhere stores nothing. */
    comps[0] = component(c1, 16, k1);
    comps[1] = component(c2, 16, "000000");
    CHECK_STATUS(pmp_key_form(bureau, &spec, comps, 2, expected, &info),
                 PMP_STATUS_KCV_MISMATCH);
    CHECK(message_contains("component 2"));
    CHECK_STATUS(pmp_key_find(bureau, "ZMK-T", &info), PMP_STATUS_NOT_FOUND);
    comps[1] = component(c2, 16, k2);
    CHECK_STATUS(pmp_key_form(bureau, &spec, comps, 2, "ABCDEF", &info),
                 PMP_STATUS_KCV_MISMATCH);
    CHECK_STATUS(pmp_key_find(bureau, "ZMK-T", &info), PMP_STATUS_NOT_FOUND);
    CHECK_STATUS(pmp_key_form(bureau, &spec, comps, 2, "XYZ", &info),
                 PMP_STATUS_INVALID_ARGUMENT);

    /* The right ones. */
    CHECK_STATUS(pmp_key_form(bureau, &spec, comps, 2, expected, &info), PMP_STATUS_OK);
    CHECK(strcmp(info.kcv, expected) == 0);
    CHECK(strcmp(info.usage, "K0") == 0);
    /* Without KCVs at all. */
    spec.label = "ZMK-T2";
    comps[0].kcv = NULL;
    comps[1].kcv = NULL;
    CHECK_STATUS(pmp_key_form(bureau, &spec, comps, 2, NULL, &info), PMP_STATUS_OK);
    CHECK(strcmp(info.kcv, expected) == 0);

    /* Three 3-key TDES components. */
    for (i = 0; i < 24; i++) {
        c1[i] = (uint8_t)(0x13 * i + 5);
        c2[i] = (uint8_t)(0x71 ^ (i * 3));
        c3[i] = (uint8_t)(0xC4 + 17 * i);
    }
    comps[0] = component(c1, 24, NULL);
    comps[1] = component(c2, 24, NULL);
    comps[2] = component(c3, 24, NULL);
    spec = key_spec("ZMK-T3", PMP_ALGORITHM_TDES, 24, "K0", "B", "N");
    CHECK_STATUS(pmp_key_form(bureau, &spec, comps, 3, NULL, &info), PMP_STATUS_OK);
    CHECK(info.length == 24);

    /* Misuse. */
    spec.label = "ZMK-BAD";
    CHECK_STATUS(pmp_key_form(bureau, &spec, comps, 1, NULL, &info),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_key_form(bureau, &spec, comps, 0, NULL, &info),
                 PMP_STATUS_INVALID_ARGUMENT);
    spec.length = 16; /* components are 24 bytes */
    CHECK_STATUS(pmp_key_form(bureau, &spec, comps, 3, NULL, &info),
                 PMP_STATUS_INVALID_ARGUMENT);
    spec.length = 24;
    comps[2] = component(c3, 16, NULL);
    CHECK_STATUS(pmp_key_form(bureau, &spec, comps, 3, NULL, &info),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_key_form(bureau, &spec, NULL, 3, NULL, &info), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_form(bureau, &spec, comps, 3, NULL, NULL), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_form(bureau, NULL, comps, 3, NULL, &info), PMP_STATUS_NULL_ARGUMENT);
    /* Components whose XOR is a degenerate 2-key TDES key (K1 == K2: single DES). */
    memcpy(degenerate, TDES_DATA_KEY, 8);
    memcpy(degenerate + 8, TDES_DATA_KEY, 8);
    split(degenerate, 16, c1, c2);
    comps[0] = component(c1, 16, NULL);
    comps[1] = component(c2, 16, NULL);
    spec = key_spec("ZMK-DEGENERATE", PMP_ALGORITHM_TDES, 16, "K0", "B", "N");
    CHECK_STATUS(pmp_key_form(bureau, &spec, comps, 2, NULL, &info), PMP_STATUS_KEY_REFUSED);
    CHECK_STATUS(pmp_key_find(bureau, "ZMK-DEGENERATE", &info), PMP_STATUS_NOT_FOUND);
}

static void test_import_export(void) {
    pmp_key_spec spec = key_spec("TK-E", PMP_ALGORITHM_TDES, 16, "D0", "B", "E");
    pmp_key_info sent, got, info;
    char block[PMP_KEY_BLOCK_CAP], tampered[PMP_KEY_BLOCK_CAP];
    size_t needed = 0, written = 0;
    uint8_t ct[32], clear[32];
    size_t ct_len = 0, clear_len = 0;
    pmp_cipher_spec c = cipher("TK-E", PMP_MODE_CBC, IV8, 8, PMP_PADDING_ISO9797_M2);

    /* Both sides hold ZMK-X (from the same components). */
    form_known(bureau, "ZMK-X", PMP_ALGORITHM_AES, AES_ZMK, 32, "K0", "B");
    form_known(partner, "ZMK-X", PMP_ALGORITHM_AES, AES_ZMK, 32, "K0", "B");
    CHECK_STATUS(pmp_key_generate(bureau, &spec, &sent), PMP_STATUS_OK);
    CHECK(strcmp(sent.exportability, "E") == 0);

    /* Export: ask the size, then fetch. */
    CHECK_STATUS(pmp_key_export(bureau, "TK-E", "ZMK-X", NULL, 0, &needed),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed > 16 && needed <= PMP_KEY_BLOCK_CAP);
    memset(block, 'x', sizeof block);
    CHECK_STATUS(pmp_key_export(bureau, "TK-E", "ZMK-X", block, needed - 1, &written),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(written == needed && block[0] == 'x');
    CHECK_STATUS(pmp_key_export(bureau, "TK-E", "ZMK-X", block, sizeof block, &written),
                 PMP_STATUS_OK);
    CHECK(written == strlen(block) && written + 1 == needed);
    CHECK(block[0] == 'D'); /* version D under an AES KEK */

    /* Export misuse. */
    CHECK_STATUS(pmp_key_export(bureau, "DK-A", "ZMK-X", tampered, sizeof tampered, &written),
                 PMP_STATUS_POLICY); /* not exportable */
    CHECK_STATUS(pmp_key_export(bureau, "TK-E", "DK-A", tampered, sizeof tampered, &written),
                 PMP_STATUS_POLICY); /* not a key-encryption key */
    CHECK_STATUS(pmp_key_export(bureau, "NOPE", "ZMK-X", tampered, sizeof tampered, &written),
                 PMP_STATUS_NOT_FOUND);
    CHECK_STATUS(pmp_key_export(bureau, "TK-E", NULL, tampered, sizeof tampered, &written),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_export(bureau, "TK-E", "ZMK-X", tampered, sizeof tampered, NULL),
                 PMP_STATUS_NULL_ARGUMENT);

    /* Import on the other side, with the KCV sent separately. */
    CHECK_STATUS(pmp_key_import(partner, "TK-E", "ZMK-X", block, sent.kcv, &got),
                 PMP_STATUS_OK);
    CHECK(strcmp(got.kcv, sent.kcv) == 0);
    CHECK(strcmp(got.usage, "D0") == 0 && strcmp(got.exportability, "E") == 0);
    /* The same key: what one side encrypts the other decrypts. */
    CHECK_STATUS(pmp_data_encrypt(bureau, &c, PAN_DATA, 16, ct, sizeof ct, &ct_len),
                 PMP_STATUS_OK);
    CHECK_STATUS(pmp_data_decrypt(partner, &c, ct, ct_len, clear, sizeof clear, &clear_len),
                 PMP_STATUS_OK);
    CHECK(clear_len == 16 && memcmp(clear, PAN_DATA, 16) == 0);

    /* Import misuse: nothing stays in the store. */
    CHECK_STATUS(pmp_key_import(partner, "TK-E2", "ZMK-X", block, "123456", &info),
                 PMP_STATUS_KCV_MISMATCH);
    CHECK_STATUS(pmp_key_find(partner, "TK-E2", &info), PMP_STATUS_NOT_FOUND);
    strcpy(tampered, block);
    tampered[40] = tampered[40] == '0' ? '1' : '0';
    CHECK_STATUS(pmp_key_import(partner, "TK-E2", "ZMK-X", tampered, NULL, &info),
                 PMP_STATUS_CRYPTO_FAILURE);
    CHECK(message_contains("cryptographic"));
    CHECK(pmp_key_import(partner, "TK-E2", "ZMK-X", "hello", NULL, &info) ==
          PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_key_import(partner, "TK-E", "ZMK-X", block, NULL, &info),
                 PMP_STATUS_ALREADY_EXISTS);
    CHECK_STATUS(pmp_key_import(bureau, "TK-E2", "DK-A", block, NULL, &info),
                 PMP_STATUS_POLICY); /* DK-A cannot unwrap */
    CHECK_STATUS(pmp_key_import(partner, "TK-E2", "NOPE", block, NULL, &info),
                 PMP_STATUS_NOT_FOUND);
    CHECK_STATUS(pmp_key_import(partner, "TK-E2", "ZMK-X", NULL, NULL, &info),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_import(partner, NULL, "ZMK-X", block, NULL, &info),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_import(partner, "TK-E2", "ZMK-X", block, NULL, NULL),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_find(partner, "TK-E2", &info), PMP_STATUS_NOT_FOUND);
}

/* ------------------------------------------------------------------------------------
 * Data: encrypt, decrypt, translate, batch
 * ------------------------------------------------------------------------------------ */

static uint8_t pan_under_dkt[32]; /* PAN_DATA under DK-T, CBC, IV8, M2 */
static size_t pan_under_dkt_len;
static uint8_t pan_under_dka[48]; /* translated to DK-A, CBC, IV16, M2 */
static size_t pan_under_dka_len;

static void test_data(void) {
    pmp_cipher_spec from = cipher("DK-T", PMP_MODE_CBC, IV8, 8, PMP_PADDING_ISO9797_M2);
    pmp_cipher_spec to = cipher("DK-A", PMP_MODE_CBC, IV16, 16, PMP_PADDING_ISO9797_M2);
    pmp_cipher_spec bad;
    pmp_key_spec pin = key_spec("PK-GEN", PMP_ALGORITHM_TDES, 16, "P0", "B", "N");
    pmp_key_info info;
    uint8_t out[64], back[64], sentinel[64];
    size_t n = 0, m = 0, needed = 0;

    form_known(bureau, "DK-T", PMP_ALGORITHM_TDES, TDES_DATA_KEY, 16, "D0", "B");
    CHECK_STATUS(pmp_key_generate(bureau, &pin, &info), PMP_STATUS_OK);

    CHECK_STATUS(pmp_data_encrypt(bureau, &from, PAN_DATA, 16, pan_under_dkt,
                                  sizeof pan_under_dkt, &pan_under_dkt_len),
                 PMP_STATUS_OK);
    CHECK(pan_under_dkt_len == 24);

    /* TDES-CBC under DK-T -> AES-CBC under DK-A, inside the HSM. */
    CHECK_STATUS(pmp_data_translate(bureau, &from, &to, pan_under_dkt, pan_under_dkt_len,
                                    pan_under_dka, sizeof pan_under_dka, &pan_under_dka_len),
                 PMP_STATUS_OK);
    CHECK(pan_under_dka_len == 32);
    CHECK_STATUS(pmp_data_decrypt(bureau, &to, pan_under_dka, pan_under_dka_len, out,
                                  sizeof out, &n),
                 PMP_STATUS_OK);
    CHECK(n == 16 && memcmp(out, PAN_DATA, 16) == 0);
    /* And back: the same ciphertext (fixed IV). */
    CHECK_STATUS(pmp_data_translate(bureau, &to, &from, pan_under_dka, pan_under_dka_len, back,
                                    sizeof back, &m),
                 PMP_STATUS_OK);
    CHECK(m == pan_under_dkt_len && memcmp(back, pan_under_dkt, m) == 0);
    /* ECB, no padding. */
    from = cipher("DK-T", PMP_MODE_ECB, NULL, 0, PMP_PADDING_NONE);
    CHECK_STATUS(pmp_data_encrypt(bureau, &from, PAN_DATA, 16, out, sizeof out, &n),
                 PMP_STATUS_OK);
    CHECK(n == 16);
    CHECK_STATUS(pmp_data_encrypt(bureau, &from, PAN_DATA, 15, out, sizeof out, &n),
                 PMP_STATUS_INVALID_ARGUMENT); /* not whole blocks, no padding */
    from = cipher("DK-T", PMP_MODE_CBC, IV8, 8, PMP_PADDING_ISO9797_M2);

    /* Short buffers: the size needed, nothing written. */
    memset(out, 0xEE, sizeof out);
    memset(sentinel, 0xEE, sizeof sentinel);
    CHECK_STATUS(pmp_data_translate(bureau, &from, &to, pan_under_dkt, pan_under_dkt_len, out,
                                    31, &needed),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed == 32 && memcmp(out, sentinel, sizeof out) == 0);
    CHECK_STATUS(pmp_data_translate(bureau, &from, &to, pan_under_dkt, pan_under_dkt_len, NULL,
                                    0, &needed),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed == 32);
    CHECK_STATUS(pmp_data_encrypt(bureau, &from, PAN_DATA, 16, out, 8, &needed),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed == 24);
    CHECK_STATUS(pmp_data_decrypt(bureau, &to, pan_under_dka, pan_under_dka_len, out, 4,
                                  &needed),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed == 16 && memcmp(out, sentinel, sizeof out) == 0);

    /* Wrong key usage and mode of use. */
    bad = cipher("PK-GEN", PMP_MODE_CBC, IV8, 8, PMP_PADDING_ISO9797_M2);
    CHECK_STATUS(pmp_data_translate(bureau, &bad, &to, pan_under_dkt, pan_under_dkt_len, out,
                                    sizeof out, &n),
                 PMP_STATUS_POLICY);
    CHECK(message_contains("PK-GEN"));
    CHECK_STATUS(pmp_data_translate(bureau, &to, &bad, pan_under_dka, pan_under_dka_len, out,
                                    sizeof out, &n),
                 PMP_STATUS_POLICY);
    CHECK_STATUS(pmp_data_encrypt(bureau, &bad, PAN_DATA, 16, out, sizeof out, &n),
                 PMP_STATUS_POLICY);
    bad = cipher("ZMK-X", PMP_MODE_CBC, IV16, 16, PMP_PADDING_ISO9797_M2);
    CHECK_STATUS(pmp_data_encrypt(bureau, &bad, PAN_DATA, 16, out, sizeof out, &n),
                 PMP_STATUS_POLICY); /* a key-encryption key never encrypts data */
    bad = cipher("DK-E", PMP_MODE_CBC, IV16, 16, PMP_PADDING_ISO9797_M2);
    CHECK_STATUS(pmp_data_encrypt(bureau, &bad, PAN_DATA, 16, out, sizeof out, &n),
                 PMP_STATUS_OK);
    CHECK_STATUS(pmp_data_decrypt(bureau, &bad, out, n, back, sizeof back, &m),
                 PMP_STATUS_POLICY); /* encrypt-only */
    CHECK_STATUS(pmp_data_translate(bureau, &bad, &to, out, n, back, sizeof back, &m),
                 PMP_STATUS_POLICY);

    /* Bad ciphertext: the opaque crypto failure. */
    memcpy(back, pan_under_dkt, pan_under_dkt_len);
    back[pan_under_dkt_len - 1] ^= 0x01;
    CHECK_STATUS(pmp_data_translate(bureau, &from, &to, back, pan_under_dkt_len, out,
                                    sizeof out, &n),
                 PMP_STATUS_CRYPTO_FAILURE);
    CHECK(pmp_data_translate(bureau, &from, &to, pan_under_dkt, 23, out, sizeof out, &n) !=
          PMP_STATUS_OK);

    /* Bad specs. */
    bad = from;
    bad.mode = 0;
    CHECK_STATUS(pmp_data_translate(bureau, &bad, &to, pan_under_dkt, pan_under_dkt_len, out,
                                    sizeof out, &n),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK(message_contains("mode"));
    bad = from;
    bad.padding = 42;
    CHECK_STATUS(pmp_data_translate(bureau, &bad, &to, pan_under_dkt, pan_under_dkt_len, out,
                                    sizeof out, &n),
                 PMP_STATUS_INVALID_ARGUMENT);
    bad = cipher("DK-T", PMP_MODE_ECB, IV8, 8, PMP_PADDING_ISO9797_M2);
    CHECK_STATUS(pmp_data_encrypt(bureau, &bad, PAN_DATA, 16, out, sizeof out, &n),
                 PMP_STATUS_INVALID_ARGUMENT); /* ECB takes no IV */
    bad = cipher("DK-T", PMP_MODE_CBC, IV16, 16, PMP_PADDING_ISO9797_M2);
    CHECK(pmp_data_encrypt(bureau, &bad, PAN_DATA, 16, out, sizeof out, &n) ==
          PMP_STATUS_INVALID_ARGUMENT); /* a 16-byte IV for TDES */
    bad = cipher("DK-T", PMP_MODE_CBC, NULL, 8, PMP_PADDING_ISO9797_M2);
    CHECK_STATUS(pmp_data_encrypt(bureau, &bad, PAN_DATA, 16, out, sizeof out, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK(message_contains("`iv`"));
    bad = cipher(NULL, PMP_MODE_CBC, IV8, 8, PMP_PADDING_ISO9797_M2);
    CHECK_STATUS(pmp_data_encrypt(bureau, &bad, PAN_DATA, 16, out, sizeof out, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    bad = cipher("NOPE", PMP_MODE_CBC, IV8, 8, PMP_PADDING_ISO9797_M2);
    CHECK_STATUS(pmp_data_encrypt(bureau, &bad, PAN_DATA, 16, out, sizeof out, &n),
                 PMP_STATUS_NOT_FOUND);
    CHECK_STATUS(pmp_data_translate(bureau, NULL, &to, pan_under_dkt, pan_under_dkt_len, out,
                                    sizeof out, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_data_translate(bureau, &from, NULL, pan_under_dkt, pan_under_dkt_len, out,
                                    sizeof out, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_data_translate(bureau, &from, &to, NULL, 24, out, sizeof out, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_data_translate(bureau, &from, &to, pan_under_dkt, pan_under_dkt_len, out,
                                    sizeof out, NULL),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_data_translate(NULL, &from, &to, pan_under_dkt, pan_under_dkt_len, out,
                                    sizeof out, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_data_decrypt(bureau, &to, NULL, 32, out, sizeof out, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_data_encrypt(bureau, &from, PAN_DATA, 16, NULL, 64, &n),
                 PMP_STATUS_NULL_ARGUMENT);
}

static void test_batch(void) {
    pmp_translate_item items[3];
    uint8_t ecb_in[16], ecb_out[16], out[128], single[64];
    size_t written = 0, ends[3] = {0, 0, 0}, n = 0, needed = 0;
    pmp_cipher_spec ecb_t = cipher("DK-T", PMP_MODE_ECB, NULL, 0, PMP_PADDING_NONE);
    pmp_cipher_spec ecb_a = cipher("DK-A", PMP_MODE_ECB, NULL, 0, PMP_PADDING_NONE);
    size_t ecb_len = 0;

    CHECK_STATUS(pmp_data_encrypt(bureau, &ecb_t, PAN_DATA, 16, ecb_in, sizeof ecb_in,
                                  &ecb_len),
                 PMP_STATUS_OK);
    CHECK_STATUS(pmp_data_translate(bureau, &ecb_t, &ecb_a, ecb_in, 16, ecb_out,
                                    sizeof ecb_out, &n),
                 PMP_STATUS_OK);

    items[0].from = cipher("DK-T", PMP_MODE_CBC, IV8, 8, PMP_PADDING_ISO9797_M2);
    items[0].to = cipher("DK-A", PMP_MODE_CBC, IV16, 16, PMP_PADDING_ISO9797_M2);
    items[0].data = pan_under_dkt;
    items[0].data_len = pan_under_dkt_len;
    items[1].from = ecb_t;
    items[1].to = ecb_a;
    items[1].data = ecb_in;
    items[1].data_len = 16;
    items[2].from = items[0].to;
    items[2].to = items[0].from;
    items[2].data = pan_under_dka;
    items[2].data_len = pan_under_dka_len;

    CHECK_STATUS(pmp_data_translate_batch(bureau, items, 3, out, sizeof out, &written, ends),
                 PMP_STATUS_OK);
    CHECK(ends[0] == 32 && ends[1] == 48 && ends[2] == 72 && written == 72);
    CHECK(memcmp(out, pan_under_dka, 32) == 0);
    CHECK(memcmp(out + 32, ecb_out, 16) == 0);
    CHECK(memcmp(out + 48, pan_under_dkt, 24) == 0);
    /* Each field as a single translation gives the same. */
    CHECK_STATUS(pmp_data_translate(bureau, &items[1].from, &items[1].to, ecb_in, 16, single,
                                    sizeof single, &n),
                 PMP_STATUS_OK);
    CHECK(n == 16 && memcmp(single, out + 32, 16) == 0);

    /* Too small: the size needed; ends untouched. */
    ends[0] = ends[1] = ends[2] = 999;
    CHECK_STATUS(pmp_data_translate_batch(bureau, items, 3, out, 71, &needed, ends),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed == 72 && ends[0] == 999 && ends[2] == 999);

    /* All or nothing, the failing item named. */
    items[1].to.key = "NOPE";
    CHECK_STATUS(pmp_data_translate_batch(bureau, items, 3, out, sizeof out, &written, ends),
                 PMP_STATUS_NOT_FOUND);
    CHECK(message_contains("item 1"));
    items[1].to.key = "PK-GEN";
    CHECK_STATUS(pmp_data_translate_batch(bureau, items, 3, out, sizeof out, &written, ends),
                 PMP_STATUS_POLICY);
    items[1].to = ecb_a;
    items[2].data_len = 31; /* not whole blocks */
    CHECK(pmp_data_translate_batch(bureau, items, 3, out, sizeof out, &written, ends) !=
          PMP_STATUS_OK);
    items[2].data_len = pan_under_dka_len;
    items[2].data = NULL;
    CHECK_STATUS(pmp_data_translate_batch(bureau, items, 3, out, sizeof out, &written, ends),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK(message_contains("item 2"));
    items[2].data = pan_under_dka;
    CHECK(ends[0] == 999 && ends[1] == 999 && ends[2] == 999);

    /* Empty batch; NULL arrays. A NULL `out` is a size query, even for 0 bytes. */
    CHECK_STATUS(pmp_data_translate_batch(bureau, NULL, 0, out, sizeof out, &written, NULL),
                 PMP_STATUS_OK);
    CHECK(written == 0);
    written = 99;
    CHECK_STATUS(pmp_data_translate_batch(bureau, NULL, 0, NULL, 0, &written, NULL),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(written == 0);
    CHECK_STATUS(pmp_data_translate_batch(bureau, NULL, 3, out, sizeof out, &written, ends),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_data_translate_batch(bureau, items, 3, out, sizeof out, &written, NULL),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_data_translate_batch(bureau, items, 3, out, sizeof out, NULL, ends),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_data_translate_batch(NULL, items, 3, out, sizeof out, &written, ends),
                 PMP_STATUS_NULL_ARGUMENT);
}

/* ------------------------------------------------------------------------------------
 * PIN blocks
 * ------------------------------------------------------------------------------------ */

static void test_pin(void) {
    /* ISO 9564-1 format 0, PIN 1234, PAN 4111111111111111:
     * PIN field 041234FFFFFFFFFF XOR PAN field 0000111111111111. */
    static const uint8_t clear0[8] = {0x04, 0x12, 0x25, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE};
    pmp_cipher_spec ecb1 = cipher("PK-1-D", PMP_MODE_ECB, NULL, 0, PMP_PADDING_NONE);
    pmp_cipher_spec ecb2 = cipher("PK-2-D", PMP_MODE_ECB, NULL, 0, PMP_PADDING_NONE);
    pmp_key_spec aes_pin = key_spec("PK-4", PMP_ALGORITHM_AES, 16, "P0", "B", "N");
    pmp_key_info info;
    uint8_t block[16], out[16], iso4[16], clear[16];
    size_t n = 0, m = 0, needed = 0;
    const char *pan = "4111111111111111";

    /* Each PIN key has a data-key twin (same clear key) so the test can build and read
     * PIN blocks through the API alone. */
    form_known(bureau, "PK-1", PMP_ALGORITHM_TDES, TDES_PIN_KEY_1, 16, "P0", "B");
    form_known(bureau, "PK-1-D", PMP_ALGORITHM_TDES, TDES_PIN_KEY_1, 16, "D0", "B");
    form_known(bureau, "PK-2", PMP_ALGORITHM_TDES, TDES_PIN_KEY_2, 16, "P0", "B");
    form_known(bureau, "PK-2-D", PMP_ALGORITHM_TDES, TDES_PIN_KEY_2, 16, "D0", "B");
    CHECK_STATUS(pmp_key_generate(bureau, &aes_pin, &info), PMP_STATUS_OK);

    CHECK_STATUS(pmp_data_encrypt(bureau, &ecb1, clear0, 8, block, sizeof block, &n),
                 PMP_STATUS_OK);
    CHECK(n == 8);

    /* PK-1 / ISO 0 -> PK-2 / ISO 0. */
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2",
                                   PMP_PIN_FORMAT_ISO0, pan, block, 8, out, sizeof out, &n),
                 PMP_STATUS_OK);
    CHECK(n == 8);
    CHECK_STATUS(pmp_data_decrypt(bureau, &ecb2, out, 8, clear, sizeof clear, &m),
                 PMP_STATUS_OK);
    CHECK(m == 8 && memcmp(clear, clear0, 8) == 0);

    /* -> PK-4 / ISO 4 (AES, 16 bytes) -> PK-2 / ISO 0 again. */
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-4",
                                   PMP_PIN_FORMAT_ISO4, pan, block, 8, iso4, sizeof iso4, &n),
                 PMP_STATUS_OK);
    CHECK(n == 16);
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-4", PMP_PIN_FORMAT_ISO4, "PK-2",
                                   PMP_PIN_FORMAT_ISO0, pan, iso4, 16, out, sizeof out, &n),
                 PMP_STATUS_OK);
    CHECK_STATUS(pmp_data_decrypt(bureau, &ecb2, out, 8, clear, sizeof clear, &m),
                 PMP_STATUS_OK);
    CHECK(m == 8 && memcmp(clear, clear0, 8) == 0);
    /* ISO 3 is accepted as a target. */
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2",
                                   PMP_PIN_FORMAT_ISO3, pan, block, 8, out, sizeof out, &n),
                 PMP_STATUS_OK);

    /* Misuse. */
    memset(out, 0xEE, sizeof out);
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2",
                                   PMP_PIN_FORMAT_ISO0, pan, block, 8, out, 4, &needed),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed == 8 && out[0] == 0xEE);
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2",
                                   PMP_PIN_FORMAT_ISO1, pan, block, 8, out, sizeof out, &n),
                 PMP_STATUS_POLICY); /* 0 -> 1 strips the PAN binding */
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2",
                                   PMP_PIN_FORMAT_ISO2, pan, block, 8, out, sizeof out, &n),
                 PMP_STATUS_POLICY);
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2",
                                   PMP_PIN_FORMAT_ISO0, "5555555555555555", block, 8, out,
                                   sizeof out, &n),
                 PMP_STATUS_CRYPTO_FAILURE); /* not this card's PIN block */
    CHECK(message_contains("cryptographic"));
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-2", PMP_PIN_FORMAT_ISO0, "PK-1",
                                   PMP_PIN_FORMAT_ISO0, pan, block, 8, out, sizeof out, &n),
                 PMP_STATUS_CRYPTO_FAILURE); /* under another key */
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1-D", PMP_PIN_FORMAT_ISO0, "PK-2",
                                   PMP_PIN_FORMAT_ISO0, pan, block, 8, out, sizeof out, &n),
                 PMP_STATUS_POLICY); /* a data key is not a PIN key */
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2-D",
                                   PMP_PIN_FORMAT_ISO0, pan, block, 8, out, sizeof out, &n),
                 PMP_STATUS_POLICY);
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2",
                                   PMP_PIN_FORMAT_ISO0, "41111", block, 8, out, sizeof out, &n),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK(message_contains("PAN") && !message_has("41111"));
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", 9, "PK-2", PMP_PIN_FORMAT_ISO0, pan, block,
                                   8, out, sizeof out, &n),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2", 0xFFFFFFFFu,
                                   pan, block, 8, out, sizeof out, &n),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2", PMP_PIN_FORMAT_ISO0,
                            pan, block, 7, out, sizeof out, &n) != PMP_STATUS_OK);
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2",
                                   PMP_PIN_FORMAT_ISO0, NULL, block, 8, out, sizeof out, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_pin_translate(bureau, NULL, PMP_PIN_FORMAT_ISO0, "PK-2",
                                   PMP_PIN_FORMAT_ISO0, pan, block, 8, out, sizeof out, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_pin_translate(bureau, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2",
                                   PMP_PIN_FORMAT_ISO0, pan, NULL, 8, out, sizeof out, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_pin_translate(NULL, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2",
                                   PMP_PIN_FORMAT_ISO0, pan, block, 8, out, sizeof out, &n),
                 PMP_STATUS_NULL_ARGUMENT);
}

/* ------------------------------------------------------------------------------------
 * MACs
 * ------------------------------------------------------------------------------------ */

static void test_mac(void) {
    /* RFC 4493 section 4, examples 1 (empty message) and 2 (16 bytes). */
    static const uint8_t msg2[16] = {0x6B, 0xC1, 0xBE, 0xE2, 0x2E, 0x40, 0x9F, 0x96,
                                     0xE9, 0x3D, 0x7E, 0x11, 0x73, 0x93, 0x17, 0x2A};
    static const uint8_t mac1[16] = {0xBB, 0x1D, 0x69, 0x29, 0xE9, 0x59, 0x37, 0x28,
                                     0x7F, 0xA3, 0x7D, 0x12, 0x9B, 0x75, 0x67, 0x46};
    static const uint8_t mac2[16] = {0x07, 0x0A, 0x16, 0xB4, 0x6B, 0x4D, 0x41, 0x44,
                                     0xF7, 0x9B, 0xDD, 0x9D, 0xD0, 0x4A, 0x28, 0x7C};
    pmp_key_spec retail = key_spec("MK-RETAIL", PMP_ALGORITHM_TDES, 16, "M3", "C", "N");
    pmp_key_info info;
    uint8_t mac[16], flipped[16];
    size_t n = 0, needed = 0;

    form_known(bureau, "MK-CMAC", PMP_ALGORITHM_AES, RFC4493_KEY, 16, "M6", "C");
    form_known(bureau, "MK-VERIFY", PMP_ALGORITHM_AES, RFC4493_KEY, 16, "M6", "V");
    CHECK_STATUS(pmp_key_generate(bureau, &retail, &info), PMP_STATUS_OK);

    CHECK_STATUS(pmp_mac_generate(bureau, "MK-CMAC", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, NULL,
                                  0, mac, sizeof mac, &n),
                 PMP_STATUS_OK);
    CHECK(n == 16 && memcmp(mac, mac1, 16) == 0);
    CHECK_STATUS(pmp_mac_generate(bureau, "MK-CMAC", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2,
                                  16, mac, sizeof mac, &n),
                 PMP_STATUS_OK);
    CHECK(n == 16 && memcmp(mac, mac2, 16) == 0);

    /* Verify: full, truncated, on a verify-only key; a wrong MAC fails. */
    CHECK_STATUS(pmp_mac_verify(bureau, "MK-CMAC", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2, 16,
                                mac2, 16),
                 PMP_STATUS_OK);
    CHECK_STATUS(pmp_mac_verify(bureau, "MK-VERIFY", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2,
                                16, mac2, 8),
                 PMP_STATUS_OK);
    memcpy(flipped, mac2, 16);
    flipped[15] ^= 0x80;
    CHECK_STATUS(pmp_mac_verify(bureau, "MK-CMAC", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2, 16,
                                flipped, 16),
                 PMP_STATUS_CRYPTO_FAILURE);
    CHECK_STATUS(pmp_mac_verify(bureau, "MK-CMAC", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2, 15,
                                mac2, 16),
                 PMP_STATUS_CRYPTO_FAILURE);
    CHECK(pmp_mac_verify(bureau, "MK-CMAC", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2, 16, mac2,
                         2) != PMP_STATUS_OK); /* too short to mean anything */

    /* Retail MAC known answer: ISO/IEC 9797-1 annex B, MAC algorithm 3, padding method 1
     * ("Now is the time for all ", tests/data/mac.txt). */
    {
        static const uint8_t key[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                                        0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10};
        static const uint8_t data[] = "Now is the time for all ";
        static const uint8_t expected[8] = {0xA1, 0xC7, 0x2E, 0x74, 0xEA, 0x3F, 0xA9, 0xB6};
        form_known(bureau, "MK-RETAIL-KAT", PMP_ALGORITHM_TDES, key, 16, "M3", "C");
        CHECK_STATUS(pmp_mac_generate(bureau, "MK-RETAIL-KAT", PMP_MAC_RETAIL,
                                      PMP_PADDING_ISO9797_M1, data, 24, mac, sizeof mac, &n),
                     PMP_STATUS_OK);
        CHECK(n == 8 && memcmp(mac, expected, 8) == 0);
        CHECK_STATUS(pmp_mac_verify(bureau, "MK-RETAIL-KAT", PMP_MAC_RETAIL,
                                    PMP_PADDING_ISO9797_M1, data, 24, expected, 8),
                     PMP_STATUS_OK);
    }

    /* Data encryption known answer: NIST SP 800-67 appendix B.1, 3-key TDES ECB
     * (tests/data/tdes.txt). */
    {
        static const uint8_t key[24] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                                        0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0x01,
                                        0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0x01, 0x23};
        static const uint8_t plain[] = "The qufck brown fox jump";
        static const uint8_t expected[24] = {0xA8, 0x26, 0xFD, 0x8C, 0xE5, 0x3B, 0x85, 0x5F,
                                             0xCC, 0xE2, 0x1C, 0x81, 0x12, 0x25, 0x6F, 0xE6,
                                             0x68, 0xD5, 0xC0, 0x5D, 0xD9, 0xB6, 0xB9, 0x00};
        uint8_t ct[32];
        size_t ct_len = 0;
        pmp_cipher_spec c = cipher("DK-KAT", PMP_MODE_ECB, NULL, 0, PMP_PADDING_NONE);
        form_known(bureau, "DK-KAT", PMP_ALGORITHM_TDES, key, 24, "D0", "B");
        CHECK_STATUS(pmp_data_encrypt(bureau, &c, plain, 24, ct, sizeof ct, &ct_len),
                     PMP_STATUS_OK);
        CHECK(ct_len == 24 && memcmp(ct, expected, 24) == 0);
    }

    /* Retail MAC (ISO 9797-1 algorithm 3) on an M3 key: generate then verify. */
    CHECK_STATUS(pmp_mac_generate(bureau, "MK-RETAIL", PMP_MAC_RETAIL, PMP_PADDING_ISO9797_M1,
                                  msg2, 16, mac, sizeof mac, &n),
                 PMP_STATUS_OK);
    CHECK(n == 8);
    CHECK_STATUS(pmp_mac_verify(bureau, "MK-RETAIL", PMP_MAC_RETAIL, PMP_PADDING_ISO9797_M1,
                                msg2, 16, mac, 8),
                 PMP_STATUS_OK);

    /* Wrong key usage, mode of use, algorithm. */
    CHECK_STATUS(pmp_mac_generate(bureau, "MK-VERIFY", PMP_MAC_CMAC_AES, PMP_PADDING_NONE,
                                  msg2, 16, mac, sizeof mac, &n),
                 PMP_STATUS_POLICY);
    CHECK_STATUS(pmp_mac_generate(bureau, "DK-A", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2, 16,
                                  mac, sizeof mac, &n),
                 PMP_STATUS_POLICY);
    CHECK_STATUS(pmp_mac_generate(bureau, "MK-CMAC", PMP_MAC_RETAIL, PMP_PADDING_ISO9797_M1,
                                  msg2, 16, mac, sizeof mac, &n),
                 PMP_STATUS_POLICY);
    CHECK_STATUS(pmp_mac_verify(bureau, "DK-A", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2, 16,
                                mac2, 16),
                 PMP_STATUS_POLICY);

    /* Bad arguments. */
    CHECK_STATUS(pmp_mac_generate(bureau, "MK-CMAC", 0, PMP_PADDING_NONE, msg2, 16, mac,
                                  sizeof mac, &n),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_mac_generate(bureau, "MK-CMAC", PMP_MAC_CMAC_AES, 0, msg2, 16, mac,
                                  sizeof mac, &n),
                 PMP_STATUS_INVALID_ARGUMENT);
    memset(mac, 0xEE, sizeof mac);
    CHECK_STATUS(pmp_mac_generate(bureau, "MK-CMAC", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2,
                                  16, mac, 15, &needed),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(needed == 16 && mac[0] == 0xEE);
    CHECK_STATUS(pmp_mac_generate(bureau, "MK-CMAC", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, NULL,
                                  16, mac, sizeof mac, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_mac_generate(bureau, NULL, PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2, 16,
                                  mac, sizeof mac, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_mac_generate(NULL, "MK-CMAC", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2, 16,
                                  mac, sizeof mac, &n),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_mac_verify(bureau, "MK-CMAC", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2, 16,
                                NULL, 16),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_mac_verify(bureau, "NOPE", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2, 16,
                                mac2, 16),
                 PMP_STATUS_NOT_FOUND);
    CHECK_STATUS(pmp_mac_verify(NULL, "MK-CMAC", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, msg2, 16,
                                mac2, 16),
                 PMP_STATUS_NULL_ARGUMENT);
}

/* ------------------------------------------------------------------------------------
 * Transport keys
 * ------------------------------------------------------------------------------------ */

static void test_transport_keys(void) {
    static pmp_transport_keys tk, untouched; /* large: not on the stack */
    pmp_transport_key_block blocks[3];
    pmp_key_info got[3], info;
    const pmp_issued_key *issued[3];
    static const char *const usages[3] = {"K0", "P0", "M6"};
    uint8_t mac[16];
    size_t n = 0, i;

    form_known(bureau, "ZMK-PROD", PMP_ALGORITHM_AES, AES_ZMK, 32, "K0", "B");
    form_known(partner, "ZMK-PROD", PMP_ALGORITHM_AES, AES_ZMK, 32, "K0", "B");

    CHECK_STATUS(pmp_transport_keys_issue(bureau, "ZMK-PROD", "LINE1", PMP_ALGORITHM_AES, 32,
                                          &tk),
                 PMP_STATUS_OK);
    issued[0] = &tk.ktk;
    issued[1] = &tk.ptk;
    issued[2] = &tk.mtk;
    CHECK(strcmp(tk.ktk.info.label, "LINE1-KTK") == 0);
    CHECK(strcmp(tk.ptk.info.label, "LINE1-PTK") == 0);
    CHECK(strcmp(tk.mtk.info.label, "LINE1-MTK") == 0);
    for (i = 0; i < 3; i++) {
        CHECK(strcmp(issued[i]->info.usage, usages[i]) == 0);
        CHECK(strcmp(issued[i]->info.exportability, "E") == 0);
        CHECK(issued[i]->info.algorithm == PMP_ALGORITHM_AES && issued[i]->info.length == 32);
        CHECK(strlen(issued[i]->info.kcv) == 10);
        CHECK(issued[i]->block[0] == 'D' && strlen(issued[i]->block) > 100);
        blocks[i].block = issued[i]->block;
        blocks[i].kcv = issued[i]->info.kcv;
    }
    CHECK(strcmp(tk.mtk.info.mode_of_use, "C") == 0);
    /* The DTK is issued with them: a data key (a K0 key never encrypts data). */
    CHECK(strcmp(tk.dtk.info.label, "LINE1-DTK") == 0);
    CHECK(strcmp(tk.dtk.info.usage, "D0") == 0 && strcmp(tk.dtk.info.exportability, "E") == 0);
    CHECK(tk.dtk.block[0] == 'D' && strlen(tk.dtk.info.kcv) == 10);

    /* Production imports them, checking each KCV. */
    CHECK_STATUS(pmp_transport_keys_import(partner, "ZMK-PROD", "LINE1", blocks, got),
                 PMP_STATUS_OK);
    for (i = 0; i < 3; i++) {
        CHECK(strcmp(got[i].kcv, issued[i]->info.kcv) == 0);
    }
    /* What data prep MACs with MTK, production verifies. */
    CHECK_STATUS(pmp_mac_generate(bureau, "LINE1-MTK", PMP_MAC_CMAC_AES, PMP_PADDING_NONE,
                                  PAN_DATA, 16, mac, sizeof mac, &n),
                 PMP_STATUS_OK);
    CHECK_STATUS(pmp_mac_verify(partner, "LINE1-MTK", PMP_MAC_CMAC_AES, PMP_PADDING_NONE,
                                PAN_DATA, 16, mac, n),
                 PMP_STATUS_OK);

    /* Import misuse: all or nothing. */
    blocks[1].kcv = blocks[0].kcv;
    CHECK_STATUS(pmp_transport_keys_import(partner, "ZMK-PROD", "LINE2", blocks, got),
                 PMP_STATUS_KCV_MISMATCH);
    CHECK_STATUS(pmp_key_find(partner, "LINE2-KTK", &info), PMP_STATUS_NOT_FOUND);
    blocks[1].kcv = tk.ptk.info.kcv;
    blocks[0].block = tk.ptk.block; /* the PTK where the KTK belongs */
    blocks[0].kcv = tk.ptk.info.kcv;
    CHECK_STATUS(pmp_transport_keys_import(partner, "ZMK-PROD", "LINE2", blocks, got),
                 PMP_STATUS_POLICY);
    blocks[0].block = tk.ktk.block;
    blocks[0].kcv = tk.ktk.info.kcv;
    CHECK_STATUS(pmp_transport_keys_import(partner, "ZMK-PROD", "LINE1", blocks, got),
                 PMP_STATUS_ALREADY_EXISTS);
    CHECK_STATUS(pmp_transport_keys_import(partner, "DK-NOPE", "LINE2", blocks, got),
                 PMP_STATUS_NOT_FOUND);
    blocks[2].kcv = NULL;
    CHECK_STATUS(pmp_transport_keys_import(partner, "ZMK-PROD", "LINE2", blocks, got),
                 PMP_STATUS_NULL_ARGUMENT);
    blocks[2].kcv = tk.mtk.info.kcv;
    CHECK_STATUS(pmp_transport_keys_import(partner, "ZMK-PROD", "LINE2", NULL, got),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_transport_keys_import(partner, "ZMK-PROD", "LINE2", blocks, NULL),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_transport_keys_import(partner, "ZMK-PROD", NULL, blocks, got),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_find(partner, "LINE2-KTK", &info), PMP_STATUS_NOT_FOUND);

    /* All four at once (KTK, PTK, MTK, DTK), under another prefix. */
    {
        pmp_transport_key_block all[4];
        pmp_key_info got4[4];
        const pmp_issued_key *four[4] = {&tk.ktk, &tk.ptk, &tk.mtk, &tk.dtk};
        for (i = 0; i < 4; i++) {
            all[i].block = four[i]->block;
            all[i].kcv = four[i]->info.kcv;
        }
        CHECK_STATUS(pmp_transport_keys_import_all(partner, "ZMK-PROD", "LINE9", all, got4),
                     PMP_STATUS_OK);
        CHECK(strcmp(got4[3].label, "LINE9-DTK") == 0 && strcmp(got4[3].usage, "D0") == 0);
        CHECK(strcmp(got4[3].kcv, tk.dtk.info.kcv) == 0);
        all[3].block = tk.ktk.block; /* the KTK where the DTK belongs: nothing stays */
        all[3].kcv = tk.ktk.info.kcv;
        CHECK_STATUS(pmp_transport_keys_import_all(partner, "ZMK-PROD", "LINE8", all, got4),
                     PMP_STATUS_POLICY);
        CHECK_STATUS(pmp_key_find(partner, "LINE8-KTK", &info), PMP_STATUS_NOT_FOUND);
        CHECK_STATUS(pmp_transport_keys_import_all(partner, "ZMK-PROD", "LINE8", NULL, got4),
                     PMP_STATUS_NULL_ARGUMENT);
    }

    /* Issue misuse; the output is untouched. */
    memset(&untouched, 0x5A, sizeof untouched);
    memcpy(&tk, &untouched, sizeof tk);
    CHECK_STATUS(pmp_transport_keys_issue(bureau, "ZMK-PROD", "LINE1", PMP_ALGORITHM_AES, 32,
                                          &tk),
                 PMP_STATUS_ALREADY_EXISTS);
    CHECK_STATUS(pmp_transport_keys_issue(bureau, "NOPE", "LINE3", PMP_ALGORITHM_AES, 32, &tk),
                 PMP_STATUS_NOT_FOUND);
    CHECK_STATUS(pmp_transport_keys_issue(bureau, "DK-A", "LINE3", PMP_ALGORITHM_AES, 32, &tk),
                 PMP_STATUS_POLICY); /* DK-A cannot wrap */
    CHECK_STATUS(pmp_transport_keys_issue(bureau, "ZMK-PROD", "LINE4", 0, 32, &tk),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_transport_keys_issue(bureau, "ZMK-PROD", NULL, PMP_ALGORITHM_AES, 32, &tk),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_transport_keys_issue(bureau, "ZMK-PROD", "LINE5", PMP_ALGORITHM_AES, 32,
                                          NULL),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_transport_keys_issue(NULL, "ZMK-PROD", "LINE5", PMP_ALGORITHM_AES, 32, &tk),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK(memcmp(&tk, &untouched, sizeof tk) == 0);
}

/* ------------------------------------------------------------------------------------
 * Several threads on one handle
 * ------------------------------------------------------------------------------------ */

#define THREADS 4
#define ROUNDS 250

struct thread_job {
    int index;
    int failures;
};

static int translate_worker(void *arg) {
    struct thread_job *job = arg;
    pmp_cipher_spec from = cipher("DK-T", PMP_MODE_CBC, IV8, 8, PMP_PADDING_ISO9797_M2);
    pmp_cipher_spec to = cipher("DK-A", PMP_MODE_CBC, IV16, 16, PMP_PADDING_ISO9797_M2);
    pmp_key_spec spec;
    pmp_key_info info;
    char label[32];
    uint8_t out[64], back[64];
    size_t n = 0, m = 0;
    int i;
    for (i = 0; i < ROUNDS; i++) {
        if (pmp_data_translate(bureau, &from, &to, pan_under_dkt, pan_under_dkt_len, out,
                               sizeof out, &n) != PMP_STATUS_OK ||
            n != pan_under_dka_len || memcmp(out, pan_under_dka, n) != 0) {
            job->failures++;
        }
        if (pmp_data_translate(bureau, &to, &from, out, n, back, sizeof back, &m) !=
                PMP_STATUS_OK ||
            m != pan_under_dkt_len || memcmp(back, pan_under_dkt, m) != 0) {
            job->failures++;
        }
        if (i % 50 == 0) {
            /* Writers too: a key generated while others translate. */
            snprintf(label, sizeof label, "T%d-%d", job->index, i);
            spec = key_spec(label, PMP_ALGORITHM_AES, 16, "D0", "B", "N");
            if (pmp_key_generate(bureau, &spec, &info) != PMP_STATUS_OK) {
                job->failures++;
            }
        }
    }
    /* The last error is this thread's own. */
    if (pmp_key_find(bureau, "NOPE", &info) != PMP_STATUS_NOT_FOUND) {
        job->failures++;
    } else {
        char message[256];
        size_t w = 0;
        if (pmp_last_error_message(message, sizeof message, &w) != PMP_STATUS_OK ||
            strstr(message, "NOPE") == NULL) {
            job->failures++;
        }
    }
    return 0;
}

static void test_threads(void) {
    thrd_t threads[THREADS];
    struct thread_job jobs[THREADS];
    int i, started = 0;
    for (i = 0; i < THREADS; i++) {
        jobs[i].index = i;
        jobs[i].failures = 0;
        if (thrd_create(&threads[i], translate_worker, &jobs[i]) == thrd_success) {
            started++;
        }
    }
    CHECK(started == THREADS);
    for (i = 0; i < started; i++) {
        CHECK(thrd_join(threads[i], NULL) == thrd_success);
        CHECK(jobs[i].failures == 0);
    }
}

/* ------------------------------------------------------------------------------------
 * XOF
 * ------------------------------------------------------------------------------------ */

static int copy_file(const char *from, const char *to, long truncate_at, const char *prefix) {
    static char buf[1 << 16];
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    size_t n = 0;
    int ok = in != NULL && out != NULL;
    if (ok) {
        n = fread(buf, 1, sizeof buf, in);
        if (truncate_at >= 0 && (size_t)truncate_at < n) {
            n = (size_t)truncate_at;
        }
        if (prefix != NULL) {
            fputs(prefix, out);
        }
        ok = fwrite(buf, 1, n, out) == n;
    }
    if (in != NULL) {
        fclose(in);
    }
    if (out != NULL) {
        ok = fclose(out) == 0 && ok;
    }
    return ok;
}

/* The position of `needle` in the file, or -1. */
static long find_in_file(const char *file, const char *needle) {
    static char buf[1 << 16];
    FILE *f = fopen(file, "rb");
    size_t n;
    char *at;
    if (f == NULL) {
        return -1;
    }
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    at = strstr(buf, needle);
    return at == NULL ? -1 : (long)(at - buf);
}

static void test_xof(void) {
    /* docs/xof.md section 8: the example's keys, from the stated test components. */
    static const uint8_t mac_c1[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                       0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF};
    static const uint8_t dk_c1[16] = {0x2B, 0x7E, 0x15, 0x16, 0x28, 0xAE, 0xD2, 0xA6,
                                      0xAB, 0xF7, 0x15, 0x88, 0x09, 0xCF, 0x4F, 0x3C};
    uint8_t mac_c2[16], dk_c2[16];
    pmp_component comps[2];
    pmp_key_spec spec;
    pmp_key_info info;
    pmp_hsm *hsm = NULL, *empty = NULL;
    uint64_t records = 99;
    const char *example = PMP_TEST_DATA "/xof/example.xof";
    const char *copy = path("copy.xof");
    long at;

    memset(mac_c2, 0x0F, sizeof mac_c2);
    memset(dk_c2, 0x01, sizeof dk_c2);
    CHECK_STATUS(pmp_hsm_init(path("xof-store"), NULL, &hsm), PMP_STATUS_OK);
    CHECK_STATUS(pmp_hsm_init(path("xof-empty"), NULL, &empty), PMP_STATUS_OK);
    if (hsm == NULL || empty == NULL) {
        return;
    }
    comps[0] = component(mac_c1, 16, NULL);
    comps[1] = component(mac_c2, 16, NULL);
    spec = key_spec("XOF-MAC", PMP_ALGORITHM_AES, 16, "M6", "C", "N");
    CHECK_STATUS(pmp_key_form(hsm, &spec, comps, 2, "270389F4B0", &info), PMP_STATUS_OK);
    comps[0] = component(dk_c1, 16, NULL);
    comps[1] = component(dk_c2, 16, NULL);
    spec = key_spec("DK-PAN", PMP_ALGORITHM_AES, 16, "D0", "B", "N");
    CHECK_STATUS(pmp_key_form(hsm, &spec, comps, 2, "65E3953E6C", &info), PMP_STATUS_OK);

    CHECK_STATUS(pmp_xof_verify(hsm, example, &records), PMP_STATUS_OK);
    CHECK(records == 2);
    records = 0;
    CHECK_STATUS(pmp_xof_verify_with_key(hsm, example, "XOF-MAC", &records), PMP_STATUS_OK);
    CHECK(records == 2);
    CHECK_STATUS(pmp_xof_verify_with_key(hsm, example, NULL, &records), PMP_STATUS_OK);
    /* The caller expects another MAC key: refused, whatever the file says. */
    records = 99;
    CHECK_STATUS(pmp_xof_verify_with_key(hsm, example, "DK-PAN", &records), PMP_STATUS_POLICY);
    CHECK(records == 99);
    CHECK_STATUS(pmp_xof_verify_with_key(hsm, NULL, "XOF-MAC", &records), PMP_STATUS_NULL_ARGUMENT);

    /* Bad input files; nothing written to out_records. */
    records = 99;
    CHECK_STATUS(pmp_xof_verify(empty, example, &records), PMP_STATUS_NOT_FOUND);
    CHECK(message_contains("XOF-MAC"));
    CHECK_STATUS(pmp_xof_verify(hsm, path("no-such.xof"), &records), PMP_STATUS_IO);
    /* One ciphertext digit changed. */
    CHECK(copy_file(example, copy, -1, NULL));
    at = find_in_file(copy, "padding=\"2\">D0A9");
    CHECK(at > 0 && file_flip_byte(copy, at + 13));
    CHECK_STATUS(pmp_xof_verify(hsm, copy, &records), PMP_STATUS_INTEGRITY_FAILURE);
    CHECK(message_contains("copy.xof line"));
    /* The second record dropped with the trailer: truncated. */
    at = find_in_file(example, "<record seq=\"2\"");
    CHECK(at > 0 && copy_file(example, copy, at, NULL));
    CHECK_STATUS(pmp_xof_verify(hsm, copy, &records), PMP_STATUS_INTEGRITY_FAILURE);
    /* A DOCTYPE is refused. */
    {
        FILE *f = fopen(copy, "wb");
        CHECK(f != NULL);
        if (f != NULL) {
            fputs("<?xml version=\"1.0\"?>\n<!DOCTYPE xof [<!ENTITY x \"y\">]>\n", f);
            fclose(f);
        }
    }
    CHECK_STATUS(pmp_xof_verify(hsm, copy, &records), PMP_STATUS_INTEGRITY_FAILURE);
    CHECK(message_contains("DOCTYPE"));
    CHECK(file_write(copy, "not xml at all"));
    CHECK_STATUS(pmp_xof_verify(hsm, copy, &records), PMP_STATUS_INTEGRITY_FAILURE);
    CHECK(records == 99);

    CHECK_STATUS(pmp_xof_verify(hsm, NULL, &records), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_xof_verify(hsm, example, NULL), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_xof_verify(NULL, example, &records), PMP_STATUS_NULL_ARGUMENT);
    pmp_hsm_free(empty);
    pmp_hsm_free(hsm);
}

/* ------------------------------------------------------------------------------------
 * Import: issuer file -> XOF
 * ------------------------------------------------------------------------------------ */

struct progress_log {
    int calls;
    uint64_t last;
    int decreasing;
};

static void on_progress(uint64_t records_done, void *user) {
    struct progress_log *log = user;
    if (records_done < log->last) {
        log->decreasing = 1;
    }
    log->last = records_done;
    log->calls++;
}

/* The issuer's card file: a header row, `n` records (card_id, pan encrypted under TK-ISSUER
 * in hex, expiry, name), a trailer declaring `declared` records. */
static int write_cards(pmp_hsm *hsm, const char *file, const char *const *pans, int n,
                       int declared) {
    static const uint8_t zero_iv[8] = {0};
    pmp_cipher_spec tk = cipher("TK-ISSUER", PMP_MODE_CBC, zero_iv, 8, PMP_PADDING_ISO9797_M2);
    FILE *f = fopen(file, "wb");
    int i;
    if (f == NULL) {
        return 0;
    }
    fputs("card_id,pan,expiry,name\n", f);
    for (i = 0; i < n; i++) {
        uint8_t ct[32];
        char ct_hex[65];
        size_t len = 0;
        CHECK_STATUS(pmp_data_encrypt(hsm, &tk, (const uint8_t *)pans[i], strlen(pans[i]), ct,
                                      sizeof ct, &len),
                     PMP_STATUS_OK);
        to_hex(ct, len, ct_hex);
        fprintf(f, "C-%04d,%s,2912,CARDHOLDER %d\n", i + 1, ct_hex, i + 1);
    }
    fprintf(f, "TRL,%d\n", declared);
    return fclose(f) == 0;
}

static int write_product(const char *file, const char *tk_kcv) {
    FILE *f = fopen(file, "wb");
    if (f == NULL) {
        return 0;
    }
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<product format=\"pmp-product-1\" name=\"C-TEST\" issuer=\"CBANK\">\n"
            "  <keys>\n"
            "    <transport-key label=\"TK-ISSUER\" kcv=\"%s\"/>\n"
            "    <mac-key label=\"XOF-MAC\"/>\n"
            "  </keys>\n"
            "  <layout kind=\"delimited\" separator=\",\" header=\"true\" record-id=\"card_id\">\n"
            "    <field-encryption mode=\"cbc\" iv=\"zero\" padding=\"2\"/>\n"
            "    <count trailer=\"TRL\" column=\"2\"/>\n"
            "  </layout>\n"
            "  <fields>\n"
            "    <field name=\"card_id\" required=\"true\"/>\n"
            "    <field name=\"pan\" required=\"true\" check=\"pan\" encrypted=\"true\" "
            "attribute=\"PAN\" dkep=\"DKEP-PAN\"/>\n"
            "    <field name=\"expiry\" required=\"true\" check=\"yymm\" attribute=\"EXPIRY\" "
            "dkep=\"DKEP-CARD\"/>\n"
            "    <field name=\"name\" required=\"true\" check=\"name\" max-length=\"26\" "
            "attribute=\"NAME\" dkep=\"DKEP-NAME\"/>\n"
            "  </fields>\n"
            "</product>\n",
            tk_kcv);
    return fclose(f) == 0;
}

static int file_exists(const char *file) {
    FILE *f = fopen(file, "rb");
    if (f != NULL) {
        fclose(f);
        return 1;
    }
    return 0;
}

/* Data preparation of the import's XOF (3 cards of product C-TEST), and its check. */
static void test_prep(pmp_hsm *hsm, const char *xof) {
    static const char *const imks[3][2] = {{"IMK-AC", "E0"}, {"IMK-SMI", "E2"}, {"IMK-SMC", "E1"}};
    static const char *const tks[4][3] = {
        {"P-KTK", "K0", "B"}, {"P-PTK", "P0", "B"}, {"P-MTK", "M6", "C"}, {"P-DTK", "D0", "B"}};
    pmp_key_spec spec;
    pmp_key_info info;
    pmp_prep_options opts;
    static pmp_prep_summary summary, untouched;
    struct progress_log log = {0, 0, 0};
    char profile[1100], production[1100], rejects[1100], bad[1100], other[1100];
    uint64_t cards = 0;
    long at;
    size_t i;

    snprintf(profile, sizeof profile, "%s", path("profile.xml"));
    snprintf(production, sizeof production, "%s", path("production.xml"));
    snprintf(rejects, sizeof rejects, "%s", path("production.rejects.txt"));
    snprintf(bad, sizeof bad, "%s", path("bad-production.xml"));
    snprintf(other, sizeof other, "%s", path("other-profile.xml"));
    for (i = 0; i < 3; i++) {
        spec = key_spec(imks[i][0], PMP_ALGORITHM_TDES, 16, imks[i][1], "X", "N");
        CHECK_STATUS(pmp_key_generate(hsm, &spec, &info), PMP_STATUS_OK);
    }
    for (i = 0; i < 4; i++) {
        spec = key_spec(tks[i][0], PMP_ALGORITHM_AES, 32, tks[i][1], tks[i][2], "E");
        CHECK_STATUS(pmp_key_generate(hsm, &spec, &info), PMP_STATUS_OK);
    }
    CHECK(file_write(profile,
                     "<profile format=\"pmp-profile-1\" name=\"C-PROFILE\" product=\"C-TEST\">\n"
                     "  <keys ktk=\"P-KTK\" ptk=\"P-PTK\" mtk=\"P-MTK\" dtk=\"P-DTK\" "
                     "xof-mac-key=\"XOF-MAC\"/>\n"
                     "  <icc-keys option=\"auto\" imk-ac=\"IMK-AC\" imk-smi=\"IMK-SMI\" "
                     "imk-smc=\"IMK-SMC\" pan=\"PAN\" psn-default=\"01\"/>\n"
                     "  <dgi id=\"0101\"><tag id=\"5A\" from=\"PAN\" format=\"cn\"/>"
                     "<tag id=\"5F24\" from=\"EXPIRY\" format=\"yymm-end-of-month\"/>"
                     "<tag id=\"5F20\" from=\"NAME\" format=\"ans\"/></dgi>\n"
                     "  <dgi id=\"8000\" content=\"icc-master-keys\"/>\n"
                     "  <dgi id=\"9000\" content=\"icc-master-key-kcvs\"/>\n"
                     "  <dgi id=\"9010\" value=\"0303\"/>\n"
                     "</profile>\n"));

    memset(&opts, 0, sizeof opts);
    /* struct_size unset: refused, as for pmp_import_options. */
    CHECK_STATUS(pmp_prep_run(hsm, profile, xof, production, &opts, &summary),
                 PMP_STATUS_INVALID_ARGUMENT);
    opts.struct_size = sizeof opts;
    opts.workers = 2;
    opts.progress = on_progress;
    opts.user = &log;
    CHECK_STATUS(pmp_prep_run(hsm, profile, xof, production, &opts, &summary), PMP_STATUS_OK);
    /* No ICC RSA keys in this profile. */
    CHECK(summary.icc_keys_from_pool == 0 && summary.icc_keys_in_line == 0);
    CHECK(summary.has_icc_serial == 0);
    CHECK(strcmp(summary.order_id, "ORDER-C-1") == 0);
    CHECK(summary.read == 3 && summary.prepared == 3 && summary.rejected == 0);
    CHECK(summary.workers == 2 && summary.elapsed_seconds >= 0.0);
    CHECK(log.calls >= 1 && log.last == 3 && !log.decreasing);
    CHECK(file_exists(rejects));
    CHECK(find_in_file(production, "<production version=\"1\">") >= 0);
    CHECK(find_in_file(production, "key=\"P-KTK\" mode=\"ecb\" padding=\"none\"") >= 0);
    CHECK(find_in_file(production, "4111111111111111") < 0); /* no clear PAN */

    /* The production side: count, pinned MAC key, tamper. */
    CHECK_STATUS(pmp_production_verify(hsm, production, NULL, &cards), PMP_STATUS_OK);
    CHECK(cards == 3);
    cards = 0;
    CHECK_STATUS(pmp_production_verify(hsm, production, "P-MTK", &cards), PMP_STATUS_OK);
    CHECK(cards == 3);
    CHECK_STATUS(pmp_production_verify(hsm, production, "P-DTK", &cards), PMP_STATUS_POLICY);
    at = find_in_file(production, "<dgi id=\"9010\">0303");
    CHECK(at >= 0);
    if (at >= 0) {
        static char text[1 << 16];
        FILE *f = fopen(production, "rb");
        size_t n = f != NULL ? fread(text, 1, sizeof text - 1, f) : 0;
        if (f != NULL) {
            fclose(f);
        }
        text[n] = 0;
        text[at + (long)strlen("<dgi id=\"9010\">0303") - 1] = '4';
        CHECK(file_write(bad, text));
        CHECK_STATUS(pmp_production_verify(hsm, bad, NULL, &cards), PMP_STATUS_INTEGRITY_FAILURE);
        {
            char message[512];
            last_error(message, sizeof message);
            CHECK(strstr(message, "(card 1): card MAC does not verify") != NULL);
        }
    }
    CHECK_STATUS(pmp_production_verify(partner, production, NULL, &cards), PMP_STATUS_NOT_FOUND);
    CHECK_STATUS(pmp_production_verify(hsm, path("none.xml"), NULL, &cards), PMP_STATUS_IO);

    /* Refusals leave no output and the summary untouched. */
    memset(&untouched, 0x5A, sizeof untouched);
    memcpy(&summary, &untouched, sizeof summary);
    CHECK(file_write(other, "<profile format=\"pmp-profile-1\" name=\"X\" product=\"C-TEST\">"
                            "<keys ktk=\"P-KTK\" ptk=\"P-PTK\" mtk=\"P-MTK\" dtk=\"NOPE\"/>"
                            "<dgi id=\"9010\" value=\"0303\"/></profile>"));
    CHECK_STATUS(pmp_prep_run(hsm, other, xof, path("p1.xml"), NULL, &summary),
                 PMP_STATUS_NOT_FOUND);
    CHECK(file_write(other, "<profile format=\"pmp-profile-1\"><nonsense/></profile>"));
    CHECK_STATUS(pmp_prep_run(hsm, other, xof, path("p1.xml"), NULL, &summary),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK(!file_exists(path("p1.xml")) && !file_exists(path("p1.rejects.txt")));
    CHECK_STATUS(pmp_prep_run(hsm, profile, xof, xof, NULL, &summary),
                 PMP_STATUS_INVALID_ARGUMENT); /* the output may not be the input */
    CHECK_STATUS(pmp_prep_run(hsm, NULL, xof, production, NULL, &summary),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_prep_run(hsm, profile, NULL, production, NULL, &summary),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_prep_run(hsm, profile, xof, NULL, NULL, &summary), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_prep_run(hsm, profile, xof, production, NULL, NULL),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_prep_run(NULL, profile, xof, production, NULL, &summary),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK(memcmp(&summary, &untouched, sizeof summary) == 0);
    CHECK_STATUS(pmp_production_verify(hsm, NULL, NULL, &cards), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_production_verify(hsm, production, NULL, NULL), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_production_verify(NULL, production, NULL, &cards), PMP_STATUS_NULL_ARGUMENT);
}

static void test_import(void) {
    /* Luhn-valid PANs, then one with a wrong check digit (rejected, never lost). */
    static const char *const pans[4] = {"4111111111111111", "5500000000000004",
                                        "4012888888881881", "4111111111111112"};
    static const char *const dkeps[3] = {"DKEP-PAN", "DKEP-CARD", "DKEP-NAME"};
    pmp_hsm *hsm = NULL;
    pmp_key_info tk, info;
    pmp_key_spec spec;
    pmp_import_options opts;
    static pmp_import_summary summary, untouched;
    struct progress_log log = {0, 0, 0};
    char cards[1100], product[1100], xof[1100], rejects[1100];
    char bad_product[1100], wrong_kcv_product[1100], short_cards[1100], other_xof[1100];
    uint64_t records = 0;
    size_t i;

    /* Own copies: path() reuses its buffers. */
    snprintf(cards, sizeof cards, "%s", path("cards.csv"));
    snprintf(product, sizeof product, "%s", path("product.xml"));
    snprintf(xof, sizeof xof, "%s", path("order.xof"));
    snprintf(rejects, sizeof rejects, "%s", path("order.rejects.txt"));
    snprintf(bad_product, sizeof bad_product, "%s", path("bad-product.xml"));
    snprintf(wrong_kcv_product, sizeof wrong_kcv_product, "%s", path("kcv-product.xml"));
    snprintf(short_cards, sizeof short_cards, "%s", path("short-cards.csv"));
    snprintf(other_xof, sizeof other_xof, "%s", path("other.xof"));

    CHECK_STATUS(pmp_hsm_init(path("import-store"), NULL, &hsm), PMP_STATUS_OK);
    if (hsm == NULL) {
        return;
    }
    form_known(hsm, "TK-ISSUER", PMP_ALGORITHM_TDES, TDES_DATA_KEY, 16, "D0", "B");
    CHECK_STATUS(pmp_key_find(hsm, "TK-ISSUER", &tk), PMP_STATUS_OK);
    for (i = 0; i < 3; i++) {
        spec = key_spec(dkeps[i], PMP_ALGORITHM_AES, 32, "D0", "B", "N");
        CHECK_STATUS(pmp_key_generate(hsm, &spec, &info), PMP_STATUS_OK);
    }
    spec = key_spec("XOF-MAC", PMP_ALGORITHM_AES, 32, "M6", "C", "N");
    CHECK_STATUS(pmp_key_generate(hsm, &spec, &info), PMP_STATUS_OK);

    CHECK(write_cards(hsm, cards, pans, 4, 4));
    CHECK(write_product(product, tk.kcv));

    memset(&opts, 0, sizeof opts);
    /* struct_size unset: refused, so a struct from another version is never misread. */
    CHECK_STATUS(pmp_import_run(hsm, product, cards, xof, &opts, &summary),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK(message_contains("struct_size"));
    opts.struct_size = sizeof opts;
    /* workers beyond PMP_MAX_WORKERS: an error, not 4 billion threads. */
    opts.workers = 4294967295u;
    CHECK_STATUS(pmp_import_run(hsm, product, cards, xof, &opts, &summary),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK(message_contains("workers"));
    opts.workers = PMP_MAX_WORKERS + 1;
    CHECK_STATUS(pmp_import_run(hsm, product, cards, xof, &opts, &summary),
                 PMP_STATUS_INVALID_ARGUMENT);
    /* Empty paths are refused (never "the current directory"). */
    opts.workers = 0;
    CHECK_STATUS(pmp_import_run(hsm, product, cards, "", &opts, &summary),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK(message_contains("xof_path"));
    opts.rejects_path = "";
    CHECK_STATUS(pmp_import_run(hsm, product, cards, xof, &opts, &summary),
                 PMP_STATUS_INVALID_ARGUMENT);
    opts.rejects_path = NULL;
    opts.order_id = "ORDER-C-1";
    opts.workers = 2;
    opts.progress = on_progress;
    opts.user = &log;
    CHECK_STATUS(pmp_import_run(hsm, product, cards, xof, &opts, &summary), PMP_STATUS_OK);
    CHECK(strcmp(summary.order_id, "ORDER-C-1") == 0);
    CHECK(summary.read == 4 && summary.written == 3 && summary.rejected == 1);
    CHECK(summary.has_declared == 1 && summary.declared == 4);
    CHECK(summary.bytes > 0 && summary.workers == 2 && summary.elapsed_seconds >= 0.0);
    CHECK(log.calls >= 1 && log.last == 4 && !log.decreasing);
    CHECK(file_exists(rejects)); /* the default report path: <stem>.rejects.txt */
    CHECK(find_in_file(rejects, "id=C-0004") >= 0);
    CHECK(find_in_file(rejects, "4111111111111112") < 0); /* never a value */

    /* The XOF verifies through the HSM. */
    CHECK_STATUS(pmp_xof_verify(hsm, xof, &records), PMP_STATUS_OK);
    CHECK(records == 3);

    /* Defaults (NULL options): generated order id, report beside the XOF. */
    CHECK_STATUS(pmp_import_run(hsm, product, cards, other_xof, NULL, &summary), PMP_STATUS_OK);
    CHECK(strncmp(summary.order_id, "C-TEST-", 7) == 0);
    CHECK(summary.written == 3);

    /* Bad inputs: an error, and no output file left behind. */
    memset(&untouched, 0x5A, sizeof untouched);
    memcpy(&summary, &untouched, sizeof summary);
    CHECK(file_write(wrong_kcv_product, ""));
    CHECK(write_product(wrong_kcv_product, "ABCDEF"));
    CHECK_STATUS(pmp_import_run(hsm, wrong_kcv_product, cards, path("x1.xof"), NULL, &summary),
                 PMP_STATUS_KCV_MISMATCH);
    CHECK(!file_exists(path("x1.xof")) && !file_exists(path("x1.rejects.txt")));
    CHECK(write_cards(hsm, short_cards, pans, 3, 5)); /* declares 5, holds 3 */
    CHECK(pmp_import_run(hsm, product, short_cards, path("x2.xof"), NULL, &summary) ==
          PMP_STATUS_INTEGRITY_FAILURE);
    CHECK(!file_exists(path("x2.xof")));
    CHECK(file_write(bad_product, "<product format=\"pmp-product-1\"><nonsense/></product>"));
    CHECK_STATUS(pmp_import_run(hsm, bad_product, cards, path("x3.xof"), NULL, &summary),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK(file_write(bad_product, "<!DOCTYPE product [<!ENTITY x \"y\">]><product/>"));
    CHECK(pmp_import_run(hsm, bad_product, cards, path("x3.xof"), NULL, &summary) !=
          PMP_STATUS_OK);
    CHECK(!file_exists(path("x3.xof")));
    CHECK_STATUS(pmp_import_run(hsm, path("no-product.xml"), cards, path("x4.xof"), NULL,
                                &summary),
                 PMP_STATUS_IO);
    CHECK_STATUS(pmp_import_run(hsm, product, path("no-cards.csv"), path("x4.xof"), NULL,
                                &summary),
                 PMP_STATUS_IO);
    CHECK(!file_exists(path("x4.xof")));
    /* A store without the product's keys. */
    CHECK_STATUS(pmp_import_run(partner, product, cards, path("x5.xof"), NULL, &summary),
                 PMP_STATUS_NOT_FOUND);
    {
        static char long_id[301];
        memset(long_id, 'X', 300);
        opts.order_id = long_id; /* XOF text fields hold at most 256 bytes */
        opts.progress = NULL;
        CHECK(pmp_import_run(hsm, product, cards, path("x6.xof"), &opts, &summary) !=
              PMP_STATUS_OK);
        CHECK(!file_exists(path("x6.xof")));
    }
    opts.order_id = NULL;
    opts.rejects_path = other_xof;
    CHECK_STATUS(pmp_import_run(hsm, product, cards, other_xof, &opts, &summary),
                 PMP_STATUS_INVALID_ARGUMENT); /* report and XOF the same file */
    CHECK_STATUS(pmp_import_run(hsm, NULL, cards, xof, NULL, &summary),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_import_run(hsm, product, NULL, xof, NULL, &summary),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_import_run(hsm, product, cards, NULL, NULL, &summary),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_import_run(hsm, product, cards, xof, NULL, NULL), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_import_run(NULL, product, cards, xof, NULL, &summary),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK(memcmp(&summary, &untouched, sizeof summary) == 0);
    test_prep(hsm, xof);
    pmp_hsm_free(hsm);
}

static void test_audit(void) {
    uint64_t entries = 0;
    CHECK_STATUS(pmp_hsm_verify_audit(bureau, &entries), PMP_STATUS_OK);
    CHECK(entries > 20);
}

/* ------------------------------------------------------------------------------------
 * Sharp edges (issue 16): ABI version, empty paths, size queries, zeroed padding,
 * public lengths refused as arguments, pmp_hsm_close.
 * ------------------------------------------------------------------------------------ */

/* Whether every byte of `info` outside its fields is zero (the padding). */
static int key_info_padding_is_zero(const pmp_key_info *info) {
    const unsigned char *bytes = (const unsigned char *)info;
    unsigned char is_field[sizeof(pmp_key_info)];
    size_t i;
    memset(is_field, 0, sizeof is_field);
#define MARK(field)                                                            \
    memset(is_field + offsetof(pmp_key_info, field), 1, sizeof info->field)
    MARK(label);
    MARK(algorithm);
    MARK(length);
    MARK(usage);
    MARK(mode_of_use);
    MARK(exportability);
    MARK(kcv);
#undef MARK
    for (i = 0; i < sizeof is_field; i++) {
        if (!is_field[i] && bytes[i] != 0) {
            return 0;
        }
    }
    return 1;
}

static void test_sharp_edges(void) {
    int dummy = 0;
    pmp_hsm *hsm = NULL;
    pmp_hsm *untouched = (pmp_hsm *)&dummy;
    pmp_key_spec spec;
    pmp_key_info info, list[4];
    size_t n = 99, padding = 0;
    uint8_t block[16] = {0}, mac[8] = {0}, out[16];
    static const uint8_t data[5] = {1, 2, 3, 4, 5};

    CHECK(pmp_abi_version() == PMP_ABI_VERSION);

    /* "" is no directory: refused, nothing created in the current directory. */
    CHECK_STATUS(pmp_hsm_init("", NULL, &untouched), PMP_STATUS_INVALID_ARGUMENT);
    CHECK(untouched == (pmp_hsm *)&dummy);
    CHECK(message_contains("empty path"));
    CHECK_STATUS(pmp_hsm_open("", NULL, &untouched), PMP_STATUS_INVALID_ARGUMENT);

    CHECK_STATUS(pmp_hsm_init(path("edges"), NULL, &hsm), PMP_STATUS_OK);
    if (hsm == NULL) {
        return;
    }
    /* A size query on an empty store answers like every other size query. */
    CHECK_STATUS(pmp_key_list(hsm, NULL, 0, &n), PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(n == 0);
    CHECK_STATUS(pmp_key_list(hsm, list, 4, &n), PMP_STATUS_OK);
    CHECK(n == 0);

    /* Padding of a struct written out is zero, not library stack bytes. */
    padding = sizeof(pmp_key_info) - sizeof info.label - sizeof info.algorithm -
              sizeof info.length - sizeof info.usage - sizeof info.mode_of_use -
              sizeof info.exportability - sizeof info.kcv;
    CHECK(padding > 0); /* else this check proves nothing on this platform */
    memset(&info, 0xAA, sizeof info);
    spec = key_spec("PK-1", PMP_ALGORITHM_TDES, 16, "P0", "B", "N");
    CHECK_STATUS(pmp_key_generate(hsm, &spec, &info), PMP_STATUS_OK);
    CHECK(key_info_padding_is_zero(&info));
    spec = key_spec("PK-2", PMP_ALGORITHM_TDES, 16, "P0", "B", "N");
    CHECK_STATUS(pmp_key_generate(hsm, &spec, &info), PMP_STATUS_OK);
    memset(list, 0xAA, sizeof list);
    CHECK_STATUS(pmp_key_list(hsm, list, 4, &n), PMP_STATUS_OK);
    CHECK(n == 2 && key_info_padding_is_zero(&list[0]) && key_info_padding_is_zero(&list[1]));
    memset(&info, 0xAA, sizeof info);
    CHECK_STATUS(pmp_key_find(hsm, "PK-1", &info), PMP_STATUS_OK);
    CHECK(key_info_padding_is_zero(&info));

    /* A PIN block of the wrong length is the caller's error, not a crypto failure. */
    CHECK_STATUS(pmp_pin_translate(hsm, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2", PMP_PIN_FORMAT_ISO0,
                                   "4111111111111111", block, 7, out, sizeof out, &n),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK(message_contains("block_len"));
    CHECK_STATUS(pmp_pin_translate(hsm, "PK-1", PMP_PIN_FORMAT_ISO0, "PK-2", PMP_PIN_FORMAT_ISO0,
                                   "4111111111111111", block, 16, out, sizeof out, &n),
                 PMP_STATUS_INVALID_ARGUMENT);

    /* A 3-byte MAC is refused as an argument (MACs are 4 to 8 bytes for TDES). */
    spec = key_spec("MK-1", PMP_ALGORITHM_TDES, 16, "M3", "C", "N");
    CHECK_STATUS(pmp_key_generate(hsm, &spec, &info), PMP_STATUS_OK);
    CHECK_STATUS(pmp_mac_verify(hsm, "MK-1", PMP_MAC_RETAIL, PMP_PADDING_ISO9797_M1, data,
                                sizeof data, mac, 3),
                 PMP_STATUS_INVALID_ARGUMENT);
    CHECK(message_contains("mac_len"));
    CHECK_STATUS(pmp_mac_verify(hsm, "MK-1", PMP_MAC_RETAIL, PMP_PADDING_ISO9797_M1, data,
                                sizeof data, mac, 9),
                 PMP_STATUS_INVALID_ARGUMENT);
    /* A well-formed but wrong MAC stays the opaque crypto failure. */
    CHECK_STATUS(pmp_mac_verify(hsm, "MK-1", PMP_MAC_RETAIL, PMP_PADDING_ISO9797_M1, data,
                                sizeof data, mac, 4),
                 PMP_STATUS_CRYPTO_FAILURE);

    /* A swapped enum argument (a padding given as the MAC algorithm) is refused. */
    CHECK_STATUS(pmp_mac_verify(hsm, "MK-1", (pmp_mac_algorithm)PMP_PADDING_ISO9797_M1,
                                (pmp_padding)PMP_MAC_RETAIL, data, sizeof data, mac, 8),
                 PMP_STATUS_INVALID_ARGUMENT);

    /* _close reports the audit flush; the handle is released either way. */
    CHECK_STATUS(pmp_hsm_close(hsm), PMP_STATUS_OK);
    CHECK_STATUS(pmp_hsm_close(NULL), PMP_STATUS_OK);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    base_dir = argv[1];

    test_version();
    test_kcv_vectors();
    test_null_arguments();
    test_short_buffer();
    test_bad_arguments();
    test_last_error();
    test_sharp_edges();

    test_hsm_lifecycle();
    test_hsm_production_lmk();
    test_tampered_store();

    CHECK_STATUS(pmp_hsm_init(path("bureau"), NULL, &bureau), PMP_STATUS_OK);
    CHECK_STATUS(pmp_hsm_init(path("partner"), NULL, &partner), PMP_STATUS_OK);
    if (bureau == NULL || partner == NULL) {
        printf("%d passed, %d failed\n", passed, failed + 1);
        return 1;
    }
    test_keys();
    test_components();
    test_import_export();
    test_data();
    test_batch();
    test_pin();
    test_mac();
    test_transport_keys();
    test_threads();
    test_xof();
    test_import();
    test_audit();
    pmp_hsm_free(partner);
    pmp_hsm_free(bureau);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
