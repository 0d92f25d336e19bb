/*
 * C test of pmp_hsm_open_pkcs11 (include/pmp.h), linked against the static library.
 *
 * Built and run by tests/c_api.rs with -std=c11 -Wall -Wextra -Werror -pedantic. When the
 * library was built with the cargo feature pkcs11, tests/c_api.rs defines PMP_FEATURE_PKCS11
 * and passes a throw-away SoftHSMv2 token (SOFTHSM2_CONF in the environment): argv[1] the
 * module, argv[2] the token label, argv[3] the user PIN. Without the feature the function
 * must answer PMP_STATUS_UNSUPPORTED.
 *
 * Vector: the TDES KCV of D9EA0251738F3EF10885642FAB7AC2F8 is B53005
 * (tests/data/kcv.txt: psec 1.3.0 and pyca/cryptography).
 */
#include "pmp.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

static void last_error(char *buf, size_t cap) {
    size_t written = 0;
    buf[0] = '\0';
    if (pmp_last_error_message(buf, cap, &written) != PMP_STATUS_OK) {
        buf[0] = '\0';
    }
}

#ifdef PMP_FEATURE_PKCS11
static void test_token(const char *module, const char *token, const char *pin) {
    pmp_hsm *hsm = NULL;
    char message[512];

    /* Misuse and refusals: nothing written to *out. */
    CHECK_STATUS(pmp_hsm_open_pkcs11(NULL, token, pin, &hsm), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_hsm_open_pkcs11(module, token, NULL, &hsm), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_hsm_open_pkcs11(module, token, pin, NULL), PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_hsm_open_pkcs11("/nonexistent/libpkcs11.so", token, pin, &hsm),
                 PMP_STATUS_IO);
    CHECK_STATUS(pmp_hsm_open_pkcs11(module, "no-such-token", pin, &hsm), PMP_STATUS_NOT_FOUND);
    CHECK_STATUS(pmp_hsm_open_pkcs11(module, token, "99999", &hsm), PMP_STATUS_POLICY);
    last_error(message, sizeof message);
    CHECK(strstr(message, "99999") == NULL); /* the PIN is never in a message */
    CHECK(hsm == NULL);

    CHECK_STATUS(pmp_hsm_open_pkcs11(module, token, pin, &hsm), PMP_STATUS_OK);
    CHECK(hsm != NULL);
    if (hsm == NULL) {
        return;
    }
    {
        uint64_t entries = 7;
        uint32_t is_test = 0;
        /* The token keeps no pmp audit log: that is the software HSM's. */
        CHECK_STATUS(pmp_hsm_verify_audit(hsm, &entries), PMP_STATUS_UNSUPPORTED);
        CHECK(entries == 7);
        CHECK_STATUS(pmp_hsm_is_test(hsm, &is_test), PMP_STATUS_OK);
        CHECK(is_test == 1); /* a SoftHSMv2 token holds test keys */
    }
    {
        /* A key formed on the token from two components whose XOR is the kcv.txt key;
         * its KCV, and E(K, 0^8) computed by the token, give B53005. */
        static const uint8_t c1[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
                                       0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10};
        static const uint8_t key[16] = {0xD9, 0xEA, 0x02, 0x51, 0x73, 0x8F, 0x3E, 0xF1,
                                        0x08, 0x85, 0x64, 0x2F, 0xAB, 0x7A, 0xC2, 0xF8};
        uint8_t c2[16];
        pmp_component comps[2];
        pmp_key_spec spec;
        pmp_key_info info;
        pmp_cipher_spec ecb;
        static const uint8_t zeros[8] = {0};
        uint8_t out[16];
        size_t written = 0, i;
        for (i = 0; i < 16; i++) {
            c2[i] = (uint8_t)(key[i] ^ c1[i]);
        }
        comps[0].key = c1;
        comps[0].key_len = 16;
        comps[0].kcv = NULL;
        comps[1].key = c2;
        comps[1].key_len = 16;
        comps[1].kcv = NULL;
        spec.label = "c-api-p11-d0";
        spec.algorithm = PMP_ALGORITHM_TDES;
        spec.length = 16;
        spec.usage = "D0";
        spec.mode_of_use = "B";
        spec.exportability = "N";
        memset(&info, 0, sizeof info);
        CHECK_STATUS(pmp_key_form(hsm, &spec, comps, 2, "B53005", &info), PMP_STATUS_OK);
        CHECK(strcmp(info.kcv, "B53005") == 0);
        CHECK(strcmp(info.label, "c-api-p11-d0") == 0);
        ecb.key = "c-api-p11-d0";
        ecb.mode = PMP_MODE_ECB;
        ecb.iv = NULL;
        ecb.iv_len = 0;
        ecb.padding = PMP_PADDING_NONE;
        CHECK_STATUS(pmp_data_encrypt(hsm, &ecb, zeros, sizeof zeros, out, sizeof out, &written),
                     PMP_STATUS_OK);
        CHECK(written == 8);
        CHECK(out[0] == 0xB5 && out[1] == 0x30 && out[2] == 0x05);
        /* The same label again: refused, the key kept. */
        CHECK_STATUS(pmp_key_form(hsm, &spec, comps, 2, NULL, &info), PMP_STATUS_ALREADY_EXISTS);
        CHECK_STATUS(pmp_key_delete(hsm, "c-api-p11-d0"), PMP_STATUS_OK);
        CHECK_STATUS(pmp_key_delete(hsm, "c-api-p11-d0"), PMP_STATUS_NOT_FOUND);
    }
    pmp_hsm_free(hsm);
}
#endif

int main(int argc, char **argv) {
#ifdef PMP_FEATURE_PKCS11
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODULE TOKEN PIN\n", argv[0]);
        return 2;
    }
    test_token(argv[1], argv[2], argv[3]);
#else
    pmp_hsm *hsm = NULL;
    char message[512];
    (void)argc;
    (void)argv;
    CHECK_STATUS(pmp_hsm_open_pkcs11("libsofthsm2.so", "T", "1234", &hsm), PMP_STATUS_UNSUPPORTED);
    CHECK(hsm == NULL);
    last_error(message, sizeof message);
    CHECK(strstr(message, "pkcs11") != NULL);
#endif
    printf("test_pkcs11: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
