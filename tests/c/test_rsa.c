/*
 * C test of the RSA part of the pmp-core C API (include/pmp.h): pmp_key_generate_rsa,
 * pmp_key_public and pmp_icc_pool_fill, with their misuse cases (NULL arguments, short
 * buffers, bad lengths and exponents, a symmetric key's label).
 *
 * Built and run by tests/c_api.rs like test_pmp.c (C11, -Wall -Wextra -Werror -pedantic,
 * plainly and under AddressSanitizer + UndefinedBehaviorSanitizer); argv[1] is an empty
 * scratch directory.
 */
#include "pmp.h"

#include <stddef.h>
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

static void test_key_public(const pmp_hsm *hsm) {
    uint8_t modulus[PMP_RSA_MODULUS_CAP];
    uint8_t exponent[PMP_RSA_EXPONENT_CAP];
    size_t m_len = 99, e_len = 99;

    CHECK_STATUS(pmp_key_generate_rsa(hsm, "ISS-RSA", 1024, 3), PMP_STATUS_OK);
    CHECK_STATUS(pmp_key_generate_rsa(hsm, "ISS-F4", 1032, 65537), PMP_STATUS_OK);
    CHECK_STATUS(pmp_key_generate_rsa(hsm, "ISS-RSA", 1024, 3), PMP_STATUS_ALREADY_EXISTS);
    CHECK_STATUS(pmp_key_generate_rsa(hsm, "BAD", 1028, 3), PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_key_generate_rsa(hsm, "BAD", 2048, 3), PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_key_generate_rsa(hsm, "BAD", 1024, 17), PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_key_generate_rsa(hsm, NULL, 1024, 3), PMP_STATUS_NULL_ARGUMENT);

    /* Size query: both lengths, nothing written. */
    CHECK_STATUS(pmp_key_public(hsm, "ISS-RSA", NULL, 0, &m_len, NULL, 0, &e_len),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(m_len == 128 && e_len == 1);
    /* The modulus fits, the exponent does not: neither is written. */
    memset(modulus, 0xEE, sizeof modulus);
    CHECK_STATUS(pmp_key_public(hsm, "ISS-F4", modulus, sizeof modulus, &m_len, exponent, 2,
                                &e_len),
                 PMP_STATUS_BUFFER_TOO_SMALL);
    CHECK(m_len == 129 && e_len == 3);
    CHECK(modulus[0] == 0xEE && modulus[128] == 0xEE);

    CHECK_STATUS(pmp_key_public(hsm, "ISS-RSA", modulus, sizeof modulus, &m_len, exponent,
                                sizeof exponent, &e_len),
                 PMP_STATUS_OK);
    CHECK(m_len == 128 && e_len == 1 && exponent[0] == 0x03);
    CHECK((modulus[0] & 0x80) != 0); /* a full 1024-bit modulus */
    CHECK((modulus[127] & 1) == 1);  /* odd */

    CHECK_STATUS(pmp_key_public(hsm, "ISS-F4", modulus, sizeof modulus, &m_len, exponent,
                                sizeof exponent, &e_len),
                 PMP_STATUS_OK);
    CHECK(m_len == 129 && modulus[0] == 0x80 + (modulus[0] & 0x7F));
    CHECK(e_len == 3 && exponent[0] == 0x01 && exponent[1] == 0x00 && exponent[2] == 0x01);

    CHECK_STATUS(pmp_key_public(hsm, "NO-SUCH", modulus, sizeof modulus, &m_len, exponent,
                                sizeof exponent, &e_len),
                 PMP_STATUS_NOT_FOUND);
    CHECK_STATUS(pmp_key_public(hsm, "ISS-RSA", modulus, sizeof modulus, NULL, exponent,
                                sizeof exponent, &e_len),
                 PMP_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(pmp_key_public(NULL, "ISS-RSA", modulus, sizeof modulus, &m_len, exponent,
                                sizeof exponent, &e_len),
                 PMP_STATUS_NULL_ARGUMENT);
}

static void test_symmetric_label(const pmp_hsm *hsm) {
    uint8_t modulus[PMP_RSA_MODULUS_CAP];
    uint8_t exponent[PMP_RSA_EXPONENT_CAP];
    size_t m_len = 0, e_len = 0;
    struct pmp_key_spec spec = {"DK", PMP_ALGORITHM_AES, 16, "D0", "B", "N"};
    struct pmp_key_info info;
    CHECK_STATUS(pmp_key_generate(hsm, &spec, &info), PMP_STATUS_OK);
    CHECK(pmp_key_public(hsm, "DK", modulus, sizeof modulus, &m_len, exponent,
                         sizeof exponent, &e_len) != PMP_STATUS_OK);
    CHECK(m_len == 0 && e_len == 0);
}

static void test_pool(const pmp_hsm *hsm) {
    uint64_t available = 99;
    CHECK_STATUS(pmp_icc_pool_fill(hsm, 1024, 3, 2, &available), PMP_STATUS_OK);
    CHECK(available == 2);
    CHECK_STATUS(pmp_icc_pool_fill(hsm, 1024, 3, 1, &available), PMP_STATUS_OK);
    CHECK(available == 3);
    CHECK_STATUS(pmp_icc_pool_fill(hsm, 1024, 65537, 1, &available), PMP_STATUS_OK);
    CHECK(available == 1);
    available = 99;
    CHECK_STATUS(pmp_icc_pool_fill(hsm, 1000, 3, 1, &available), PMP_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(pmp_icc_pool_fill(hsm, 1024, 5, 1, &available), PMP_STATUS_INVALID_ARGUMENT);
    CHECK(available == 99);
    CHECK_STATUS(pmp_icc_pool_fill(hsm, 1024, 3, 1, NULL), PMP_STATUS_NULL_ARGUMENT);
}

int main(int argc, char **argv) {
    char dir[4096];
    pmp_hsm *hsm = NULL;
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    snprintf(dir, sizeof dir, "%s/rsa", argv[1]);
    CHECK_STATUS(pmp_hsm_init(dir, NULL, &hsm), PMP_STATUS_OK);
    if (hsm == NULL) {
        printf("%d passed, %d failed\n", passed, failed + 1);
        return 1;
    }
    test_key_public(hsm);
    test_symmetric_label(hsm);
    test_pool(hsm);
    pmp_hsm_free(hsm);

    /* Reopened: the keys and the pool level are still there. */
    CHECK_STATUS(pmp_hsm_open(dir, NULL, &hsm), PMP_STATUS_OK);
    if (hsm != NULL) {
        uint8_t modulus[PMP_RSA_MODULUS_CAP];
        uint8_t exponent[PMP_RSA_EXPONENT_CAP];
        size_t m_len = 0, e_len = 0;
        uint64_t available = 0;
        CHECK_STATUS(pmp_key_public(hsm, "ISS-RSA", modulus, sizeof modulus, &m_len, exponent,
                                    sizeof exponent, &e_len),
                     PMP_STATUS_OK);
        CHECK(m_len == 128);
        CHECK_STATUS(pmp_icc_pool_fill(hsm, 1024, 3, 1, &available), PMP_STATUS_OK);
        CHECK(available == 4);
        pmp_hsm_free(hsm);
    }

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
