/*
 * The bureau flow through the C API alone (include/pmp.h), on software HSMs with TEST LMKs:
 *
 *   1. open the bureau's key store (and, to play the other parties, an issuer's and a
 *      production line's);
 *   2. set up keys: ZMK-ISSUER from components, the issuer's transport key imported under
 *      it with its KCV, the bureau's DKeps;
 *   3. translate issuer data TK_issuer -> DKep inside the HSM (one field, then a batch);
 *   4. import an issuer card file (fields under TK_issuer) into an XOF order under the
 *      DKeps, with a reject report, and verify the XOF;
 *   5. issue KTK / PTK / MTK under ZMK-PROD and import them on the production side;
 *   6. list the bureau's keys and check the audit log.
 *
 * Build and run: make -C examples/c run   (see the Makefile).
 * Usage: bureau_flow [DIR]  (default: a new directory under /tmp)
 *
 * The component values below are demonstration values: in a real ceremony each custodian
 * brings a component that nobody else sees.
 */
#define _POSIX_C_SOURCE 200809L

#include "pmp.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dir;

/* Stops the program with the library's message when a call fails. */
static void check(pmp_status status, const char *what) {
    char message[512];
    if (status == PMP_STATUS_OK) {
        return;
    }
    /* Cut to the buffer if longer, never lost. */
    pmp_last_error_text(message, sizeof message, NULL);
    fprintf(stderr, "error: %s: status %u: %s\n", what, (unsigned)status, message);
    exit(1);
}

static const char *path(const char *name) {
    static char bufs[4][1024];
    static int next;
    char *buf = bufs[next++ % 4];
    snprintf(buf, sizeof bufs[0], "%s/%s", dir, name);
    return buf;
}

static void hex(const uint8_t *bytes, size_t n, char *out) {
    size_t i;
    for (i = 0; i < n; i++) {
        snprintf(out + 2 * i, 3, "%02X", bytes[i]);
    }
    out[2 * n] = '\0';
}

static pmp_key_spec spec(const char *label, pmp_algorithm algorithm, size_t length,
                         const char *usage, const char *mode, const char *exportability) {
    pmp_key_spec s;
    s.label = label;
    s.algorithm = algorithm;
    s.length = length;
    s.usage = usage;
    s.mode_of_use = mode;
    s.exportability = exportability;
    return s;
}

static pmp_cipher_spec cbc(const char *key, const uint8_t *iv, size_t iv_len) {
    pmp_cipher_spec c;
    c.key = key;
    c.mode = PMP_MODE_CBC;
    c.iv = iv;
    c.iv_len = iv_len;
    c.padding = PMP_PADDING_ISO9797_M2;
    return c;
}

static void on_progress(uint64_t records_done, void *user) {
    (void)user;
    printf("   ... %llu records processed\n", (unsigned long long)records_done);
}

/* The issuer's card file: a header row, one line per card (PAN and track 2 encrypted under
 * TK-ISSUER, CBC with a zero IV, ISO 9797-1 padding 2, in hex), a trailer with the count. */
static void write_issuer_file(pmp_hsm *issuer, const char *file) {
    static const char *const cards[5][3] = {
        {"4111111111111111", "JANE Q CARDHOLDER", "4111111111111111=29121011000012300000"},
        {"5500000000000004", "JOHN SMITH", "5500000000000004=29121011000045600000"},
        {"4012888888881881", "ANNA MUELLER", "4012888888881881=29121011000078900000"},
        {"4111111111111112", "BAD CHECK DIGIT", "4111111111111112=29121011000000000000"},
        {"378282246310005", "LEE CHAN", "378282246310005=2912101100001230000"},
    };
    static const uint8_t zero_iv[8] = {0};
    pmp_cipher_spec tk = cbc("TK-ISSUER", zero_iv, 8);
    FILE *f = fopen(file, "wb");
    size_t i, j, n;
    if (f == NULL) {
        perror(file);
        exit(1);
    }
    fputs("card_id,pan,name,track2\n", f);
    for (i = 0; i < 5; i++) {
        char enc[2][129];
        for (j = 0; j < 2; j++) {
            const char *clear = cards[i][j == 0 ? 0 : 2];
            uint8_t ct[64];
            check(pmp_data_encrypt(issuer, &tk, (const uint8_t *)clear, strlen(clear), ct,
                                   sizeof ct, &n),
                  "issuer encrypts a field");
            hex(ct, n, enc[j]);
        }
        fprintf(f, "CARD-%04u,%s,%s,%s\n", (unsigned)(i + 1), enc[0], cards[i][1], enc[1]);
    }
    fputs("TRL,5\n", f);
    fclose(f);
}

/* The product (order profile): the issuer's layout and which DKep protects which field. The
 * KCV of TK_issuer is the one the issuer sent with the key. */
static void write_product(const char *file, const char *tk_kcv) {
    FILE *f = fopen(file, "wb");
    if (f == NULL) {
        perror(file);
        exit(1);
    }
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<product format=\"pmp-product-1\" name=\"VISA-CLASSIC\" issuer=\"EXAMPLE-BANK\">\n"
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
            "    <field name=\"name\" required=\"true\" check=\"name\" max-length=\"26\" "
            "attribute=\"NAME\" dkep=\"DKEP-NAME\"/>\n"
            "    <field name=\"track2\" required=\"true\" encrypted=\"true\" attribute=\"TRACK2\" "
            "dkep=\"DKEP-TRACK2\"/>\n"
            "  </fields>\n"
            "</product>\n",
            tk_kcv);
    fclose(f);
}

/* A zone master key formed in `hsm` from `count` components of `len` bytes, each with its
 * KCV: the ceremony that gives both ends of a zone the same key. */
static void ceremony(pmp_hsm *hsm, const char *label, pmp_algorithm algorithm, size_t len,
                     uint8_t components[][32], size_t count, pmp_key_info *info) {
    char kcvs[3][11];
    pmp_component c[3];
    pmp_key_spec s = spec(label, algorithm, len, "K0", "B", "N");
    size_t i;
    for (i = 0; i < count; i++) {
        size_t n = 0;
        check(pmp_kcv(algorithm, components[i], len, kcvs[i], sizeof kcvs[i], &n),
              "component KCV");
        c[i].key = components[i];
        c[i].key_len = len;
        c[i].kcv = kcvs[i];
    }
    check(pmp_key_form(hsm, &s, c, count, NULL, info), label);
}

int main(int argc, char **argv) {
    static char tmp[] = "/tmp/pmp-bureau-c-XXXXXX";
    pmp_hsm *bureau = NULL, *issuer = NULL, *production = NULL;
    pmp_key_info info, zi, tk, dkeps[3], got[3];
    static pmp_transport_keys line; /* about 1.6 KB */
    pmp_transport_key_block blocks[3];
    const pmp_issued_key *issued[3];
    uint8_t zmk_issuer_parts[2][32], zmk_prod_parts[3][32];
    char block[PMP_KEY_BLOCK_CAP];
    size_t n = 0, i;
    uint32_t is_test = 0;
    uint64_t audit_entries = 0;
    static const char *const classes[3] = {"DKEP-PAN", "DKEP-NAME", "DKEP-TRACK2"};

    if (argc > 1) {
        dir = argv[1];
    } else if ((dir = mkdtemp(tmp)) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    printf("pmp-core %s: the bureau flow through the C API\n", pmp_version());

    /* 1. Key stores. */
    check(pmp_hsm_init(path("bureau"), NULL, &bureau), "bureau key store");
    check(pmp_hsm_is_test(bureau, &is_test), "is_test");
    printf("1. bureau key store %s (%s LMK)\n", path("bureau"), is_test ? "TEST" : "production");
    check(pmp_hsm_init(path("issuer"), NULL, &issuer), "issuer key store");
    check(pmp_hsm_init(path("production"), NULL, &production), "production key store");

    /* 2. Keys. ZMK-ISSUER: the same two components at the issuer and at the bureau. */
    for (i = 0; i < 32; i++) {
        zmk_issuer_parts[0][i] = (uint8_t)(0x5B + 37 * i);
        zmk_issuer_parts[1][i] = (uint8_t)(0xC2 ^ (19 * i));
    }
    ceremony(issuer, "ZMK-ISSUER", PMP_ALGORITHM_TDES, 16, zmk_issuer_parts, 2, &info);
    ceremony(bureau, "ZMK-ISSUER", PMP_ALGORITHM_TDES, 16, zmk_issuer_parts, 2, &zi);
    printf("2. ZMK-ISSUER formed from 2 components             KCV %s (issuer: %s)\n", zi.kcv,
           info.kcv);

    /* The issuer makes its transport key and sends it as a TR-31 block under ZMK-ISSUER,
     * with its KCV. (2-key TDES: the issuer's choice; legacy data only, SP 800-131A.) */
    {
        pmp_key_spec s = spec("TK-ISSUER", PMP_ALGORITHM_TDES, 16, "D0", "B", "E");
        check(pmp_key_generate(issuer, &s, &info), "issuer TK");
        check(pmp_key_export(issuer, "TK-ISSUER", "ZMK-ISSUER", block, sizeof block, &n),
              "export TK");
    }
    check(pmp_key_import(bureau, "TK-ISSUER", "ZMK-ISSUER", block, info.kcv, &tk),
          "import TK");
    printf("   TK_issuer imported (TR-31 %c block, KCV checked)  KCV %s\n", block[0], tk.kcv);

    for (i = 0; i < 3; i++) {
        pmp_key_spec s = spec(classes[i], PMP_ALGORITHM_AES, 32, "D0", "B", "N");
        check(pmp_key_generate(bureau, &s, &dkeps[i]), classes[i]);
        printf("   %-12s AES-256 D0, never exportable         KCV %s\n", dkeps[i].label,
               dkeps[i].kcv);
    }

    /* 3. Data: the issuer encrypts fields under TK_issuer; the bureau translates them to
     * the DKeps without ever seeing them in clear. */
    {
        static const uint8_t iv8[8] = {0};
        static const uint8_t iv16[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
        static const char *const fields[3] = {"4111111111111111", "JANE Q CARDHOLDER",
                                              "4111111111111111=29121011000012300000"};
        uint8_t under_tk[3][64], out[256];
        size_t tk_len[3], ends[3];
        pmp_translate_item items[3];
        pmp_cipher_spec from = cbc("TK-ISSUER", iv8, 8);
        for (i = 0; i < 3; i++) {
            check(pmp_data_encrypt(issuer, &from, (const uint8_t *)fields[i], strlen(fields[i]),
                                   under_tk[i], sizeof under_tk[i], &tk_len[i]),
                  "issuer encrypts a field");
        }
        {
            pmp_cipher_spec to = cbc("DKEP-PAN", iv16, 16);
            check(pmp_data_translate(bureau, &from, &to, under_tk[0], tk_len[0], out, sizeof out,
                                     &n),
                  "translate");
            printf("3. PAN field translated TK_issuer -> DKEP-PAN inside the HSM (%zu -> %zu "
                   "bytes)\n",
                   tk_len[0], n);
        }
        for (i = 0; i < 3; i++) {
            items[i].from = from;
            items[i].to = cbc(classes[i], iv16, 16);
            items[i].data = under_tk[i];
            items[i].data_len = tk_len[i];
        }
        check(pmp_data_translate_batch(bureau, items, 3, out, sizeof out, &n, ends),
              "translate batch");
        printf("   one record's 3 fields translated in one batch call (%zu bytes; ends %zu, %zu, "
               "%zu)\n",
               n, ends[0], ends[1], ends[2]);
    }

    /* 4. The issuer's card file, imported into an XOF order under the DKeps. */
    {
        pmp_key_spec s = spec("XOF-MAC", PMP_ALGORITHM_AES, 32, "M6", "C", "N");
        pmp_import_options opts;
        pmp_import_summary summary;
        char cards[1024], product[1024], xof[1024];
        uint64_t records = 0;
        snprintf(cards, sizeof cards, "%s", path("cards.csv"));
        snprintf(product, sizeof product, "%s", path("product.xml"));
        snprintf(xof, sizeof xof, "%s", path("order.xof"));
        check(pmp_key_generate(bureau, &s, &info), "XOF MAC key");
        write_issuer_file(issuer, cards);
        write_product(product, tk.kcv);
        printf("4. issuer file %s (PAN and track 2 under TK_issuer), product %s\n", cards,
               product);
        memset(&opts, 0, sizeof opts);
        opts.struct_size = sizeof opts;
        opts.order_id = "ORDER-0042";
        opts.progress = on_progress;
        check(pmp_import_run(bureau, product, cards, xof, &opts, &summary), "import");
        printf("   imported into %s: order %s, %llu read = %llu written + %llu rejected "
               "(declared %llu)\n",
               xof, summary.order_id, (unsigned long long)summary.read,
               (unsigned long long)summary.written, (unsigned long long)summary.rejected,
               (unsigned long long)summary.declared);
        printf("   reject report: %s\n", path("order.rejects.txt"));
        check(pmp_xof_verify(bureau, xof, &records), "verify XOF");
        printf("   XOF verified through the HSM (header, record MAC chain, trailer): %llu "
               "records\n",
               (unsigned long long)records);
    }

    /* 5. Transport keys for the production line, under ZMK-PROD (3 components). */
    for (i = 0; i < 32; i++) {
        zmk_prod_parts[0][i] = (uint8_t)(0x11 * i + 3);
        zmk_prod_parts[1][i] = (uint8_t)(0xE7 ^ (29 * i));
        zmk_prod_parts[2][i] = (uint8_t)(0x6A + 53 * i);
    }
    ceremony(bureau, "ZMK-PROD", PMP_ALGORITHM_AES, 32, zmk_prod_parts, 3, &info);
    printf("5. ZMK-PROD formed from 3 components (each KCV checked) KCV %s\n", info.kcv);
    check(pmp_transport_keys_issue(bureau, "ZMK-PROD", "LINE1", PMP_ALGORITHM_AES, 32, &line),
          "issue transport keys");
    issued[0] = &line.ktk;
    issued[1] = &line.ptk;
    issued[2] = &line.mtk;
    for (i = 0; i < 3; i++) {
        printf("   %-10s %s issued, KCV %s, block %.24s...\n", issued[i]->info.label,
               issued[i]->info.usage, issued[i]->info.kcv, issued[i]->block);
        blocks[i].block = issued[i]->block;
        blocks[i].kcv = issued[i]->info.kcv;
    }
    ceremony(production, "ZMK-PROD", PMP_ALGORITHM_AES, 32, zmk_prod_parts, 3, &info);
    check(pmp_transport_keys_import(production, "ZMK-PROD", "LINE1", blocks, got),
          "production imports transport keys");
    printf("   production HSM imported KTK/PTK/MTK, KCVs match: %s %s %s\n", got[0].kcv,
           got[1].kcv, got[2].kcv);
    {
        static const uint8_t record[] = "record 1 of order 42";
        uint8_t mac[16];
        check(pmp_mac_generate(bureau, "LINE1-MTK", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, record,
                               sizeof record - 1, mac, sizeof mac, &n),
              "MAC at data prep");
        check(pmp_mac_verify(production, "LINE1-MTK", PMP_MAC_CMAC_AES, PMP_PADDING_NONE, record,
                             sizeof record - 1, mac, 8),
              "MAC verified in production");
        printf("   a record MACed under MTK at data prep verifies in production\n");
    }

    /* 6. The bureau's keys and its audit log. */
    {
        static pmp_key_info keys[64];
        check(pmp_key_list(bureau, keys, 64, &n), "list keys");
        printf("6. the bureau HSM holds %zu keys (only labels, attributes and KCVs leave it):\n",
               n);
        for (i = 0; i < n; i++) {
            printf("   %-12s %s %s%s %s  KCV %s\n", keys[i].label,
                   keys[i].algorithm == PMP_ALGORITHM_AES ? "AES " : "TDES", keys[i].usage,
                   keys[i].mode_of_use, keys[i].exportability, keys[i].kcv);
        }
    }
    check(pmp_hsm_verify_audit(bureau, &audit_entries), "audit");
    printf("   bureau audit log intact: %llu entries (%s)\n", (unsigned long long)audit_entries,
           path("bureau/audit.log"));

    /* _close, not _free: it reports whether the last audit entries reached the disk. */
    check(pmp_hsm_close(production), "close production HSM");
    check(pmp_hsm_close(issuer), "close issuer HSM");
    check(pmp_hsm_close(bureau), "close bureau HSM");
    return 0;
}
