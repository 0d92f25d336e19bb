#!/usr/bin/env python3
"""Independent check of ICC RSA keys and EMV certificates made by data preparation
(docs/profile.md "Offline data authentication", docs/production.md), with pyca/cryptography
and python ints, written from the docs (not from src/).

Through the CLI: a test CA made here with pyca (1408 bits, exponent 3); an issuer RSA key
generated in the data-prep store (`pmp key generate --algorithm rsa --usage S0`), its public
half read with `pmp key public`, and an issuer certificate (EMV Book 2 Table 6) made here by
the test CA; a pool of ICC key pairs (`pmp icc-keys generate`); random cards through
`pmp import` and `pmp prep` with a DDA + SDA profile. For every card, as a terminal does:
recover the issuer certificate with the CA key (raw RSA) and rebuild the issuer modulus, then
recover the ICC certificate (9F46) with it, check header, format, PAN, expiry, hash and key
algorithm indicators, lengths, trailer and the SHA-1 over the fields, the remainder (9F48),
the exponent (9F47) and the static data rebuilt here from the card's decrypted records; the
signed static data (93) likewise; and the CRT parts decrypted from DGIs 8201-8205 (KTK known
here) form the private key of the certified modulus (p*q = n, dp, dq, qinv, a signature
round trip). A tampered record changes the hash and the check fails (shown). The production
file's MACs are recomputed and `pmp production verify` passes on a second store.

Two runs: 1024-bit ICC keys (some from the pool, the rest in line), then one card with a
1408-bit ICC key (a remainder) generated in line (`--no-icc-pool`).

Usage: scripts/interop_icc.py [PMP_BINARY] [--cards N] [--seed S]
"""

import argparse
import hashlib
import math
import os
import random
import subprocess
import sys
import tempfile
import warnings
import xml.etree.ElementTree as ET

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
import psec.tr31  # noqa: E402
import interop_prep as ip  # noqa: E402  (BER-TLV, value formats, MAC chain, AES helpers)

PRODUCT = """<product format="pmp-product-1" name="ICC" issuer="ICC-BANK">
  <keys><mac-key label="XOF-MAC"/></keys>
  <layout kind="delimited" separator=";" header="true" record-id="id"/>
  <fields>
    <field name="id" required="true"/>
    <field name="pan" required="true" check="pan" attribute="PAN" dkep="DKEP"/>
    <field name="expiry" required="true" check="yymm" attribute="EXPIRY" dkep="DKEP"/>
    <field name="name" required="true" check="name" max-length="26" attribute="NAME" dkep="DKEP"/>
  </fields>
</product>
"""

AIP = bytes.fromhex("7C00")


def profile(bits, issuer_cert, issuer_rem):
    rem = f' issuer-remainder="{issuer_rem.hex().upper()}"' if issuer_rem else ""
    return f"""<profile format="pmp-profile-1" name="ICC-DDA" product="ICC">
  <keys ktk="KTK" ptk="PTK" mtk="MTK" dtk="DTK" xof-mac-key="XOF-MAC"/>
  <icc-rsa bits="{bits}" exponent="3" issuer-key="ISS-RSA" issuer-certificate="{issuer_cert.hex().upper()}"{rem}
           issuer-exponent="03" ca-index="92" dac="5A5A"/>
  <dgi id="0101" oda="true"><tag id="5A" from="PAN" format="cn"/><tag id="5F24" from="EXPIRY" format="yymm-end-of-month"/>
                 <tag id="5F20" from="NAME" format="ans"/></dgi>
  <dgi id="0B01" oda="true"><tag id="9F4A" value="82"/><tag id="8F" content="ca-index"/><tag id="9F32" content="issuer-exponent"/></dgi>
  <dgi id="0201"><tag id="90" content="issuer-certificate"/><tag id="92" content="issuer-remainder"/></dgi>
  <dgi id="0202"><tag id="9F46" content="icc-certificate"/><tag id="9F47" content="icc-exponent"/><tag id="9F48" content="icc-remainder"/></dgi>
  <dgi id="0203"><tag id="93" content="signed-static-data"/></dgi>
  <dgi id="9104"><tag id="82" value="{AIP.hex().upper()}"/><tag id="94" value="0801020158010101"/></dgi>
  <dgi id="8201" content="icc-rsa-crt"/><dgi id="8202" content="icc-rsa-crt"/><dgi id="8203" content="icc-rsa-crt"/>
  <dgi id="8204" content="icc-rsa-crt"/><dgi id="8205" content="icc-rsa-crt"/>
</profile>
"""


def i2b(x, n):
    return x.to_bytes(n, "big")


def b2i(b):
    return int.from_bytes(b, "big")


def raw(x_bytes, e, n):
    return i2b(pow(b2i(x_bytes), e, n), (n.bit_length() + 7) // 8)


def issuer_certificate(ca, ca_n, issuer_n, issuer_e, bin6):
    """Book 2 Table 6 (docs/profile.md: issuer certificate), made by the test CA."""
    nca = (ca_n.bit_length() + 7) // 8
    ni = (issuer_n.bit_length() + 7) // 8
    mod = i2b(issuer_n, ni)
    e = b"\x03" if issuer_e == 3 else b"\x01\x00\x01"
    room = nca - 36
    part, rem = mod[:room], mod[room:]
    fields = (b"\x02" + bytes.fromhex(bin6 + "FF") + bytes.fromhex("1234") + b"\x00\x00\x07"
              + bytes([1, 1, ni, len(e)]) + part + b"\xBB" * (room - len(part)))
    m = b"\x6A" + fields + hashlib.sha1(fields + rem + e).digest() + b"\xBC"
    assert len(m) == nca
    d = ca.private_numbers().d
    return raw(m, d, ca_n), rem


def recover_issuer(ca_n, cert, rem, e):
    nca = len(cert)
    m = raw(cert, 3, ca_n)
    assert m[0] == 0x6A and m[1] == 0x02 and m[-1] == 0xBC
    ni = m[13]
    room = nca - 36
    part = m[15:15 + room]
    assert hashlib.sha1(m[1:nca - 21] + rem + e).digest() == m[nca - 21:nca - 1]
    return b2i(part[:ni] if ni <= room else part + rem)


def unpad2(b):
    return ip.unpad2(b)


class Card:
    def __init__(self, cid, pan, expiry, name):
        self.id, self.pan, self.expiry, self.name = cid, pan, expiry, name


def check_card(f, name, dg, c, keys, issuer_n, bits, seen_serials, tamper_shown):
    ktk, dtk = keys["KTK"], keys["DTK"]
    clear = {}
    for did, d in dg.items():
        data = bytes.fromhex((d.text or "").strip())
        if d.get("key") == "DTK":
            clear[did] = unpad2(ip.decrypt("AES", dtk, "cbc", bytes.fromhex(d.get("iv")), data))
        elif d.get("key") == "KTK":
            f.check((d.get("mode"), d.get("padding")) == ("ecb", "2"), f"{name}: {did} ecb, padding 2")
            clear[did] = unpad2(ip.decrypt("AES", ktk, "ecb", None, data))
        else:
            clear[did] = data
    # The records rebuilt here from the card's data (docs/profile.md formats).
    r0101 = ip.tlv("70", ip.tlv("5A", ip.fmt_cn(c.pan)) + ip.tlv("5F24", ip.fmt_eom(c.expiry))
                   + ip.tlv("5F20", c.name.encode()))
    f.check(clear.get("0101") == r0101, f"{name}: record 0101")
    r0b01 = clear.get("0B01", b"")
    f.check(r0b01 == ip.tlv("70", ip.tlv("9F4A", b"\x82") + ip.tlv("8F", b"\x92") + ip.tlv("9F32", b"\x03")),
            f"{name}: record 0B01")
    # Static data: SFI 1 by value, SFI 11 whole, then the AIP (9F4A lists 82).
    static = r0101[2:] + r0b01 + AIP

    def objs(rec):
        out, i = {}, 2 if rec[1] < 0x80 else 3
        while i < len(rec):
            t = rec[i:i + 1]
            i += 1
            if t[0] & 0x1F == 0x1F:
                t += rec[i:i + 1]
                i += 1
            ln = rec[i]
            i += 1
            if ln == 0x81:
                ln = rec[i]
                i += 1
            out[t.hex().upper()] = rec[i:i + ln]
            i += ln
        return out

    o = objs(clear["0202"])
    cert, exp, rem = o.get("9F46", b""), o.get("9F47", b""), o.get("9F48", b"")
    ni = (issuer_n.bit_length() + 7) // 8
    nicc = bits // 8
    f.check(len(cert) == ni, f"{name}: 9F46 has N_I bytes")
    f.check(exp == b"\x03", f"{name}: 9F47")
    f.check(len(rem) == max(0, nicc - (ni - 42)), f"{name}: 9F48 length {len(rem)}")
    m = raw(cert, 3, issuer_n)
    f.check(m[0] == 0x6A and m[-1] == 0xBC and m[1] == 0x04, f"{name}: header, trailer, format 04")
    f.check(m[2:12] == bytes.fromhex(c.pan + "F" * (20 - len(c.pan))), f"{name}: PAN field")
    f.check(m[12:14] == bytes.fromhex(c.expiry[2:] + c.expiry[:2]), f"{name}: expiry MMYY")
    f.check(m[17] == 1 and m[18] == 1, f"{name}: hash and key algorithm 01")
    f.check(m[19] == nicc and m[20] == 1, f"{name}: ICC key and exponent lengths")
    room = ni - 42
    part = m[21:21 + room]
    icc_n = b2i(part + rem if nicc > room else part[:nicc])
    if nicc <= room:
        f.check(part[nicc:] == b"\xBB" * (room - nicc), f"{name}: BB pad")
    good = hashlib.sha1(m[1:ni - 21] + rem + exp + static).digest() == m[ni - 21:ni - 1]
    f.check(good, f"{name}: certificate hash over fields, remainder, exponent, static data")
    seen_serials.append(m[14:17])
    # A tampered record (one bit of the PAN in record 0101) changes the hash.
    bad = bytearray(static)
    bad[5] ^= 0x01
    caught = hashlib.sha1(m[1:ni - 21] + rem + exp + bytes(bad)).digest() != m[ni - 21:ni - 1]
    f.check(caught, f"{name}: a tampered record fails the hash")
    if caught and not tamper_shown:
        print(f"  tampered record of {c.id}: recovered hash {m[ni - 21:ni - 1].hex().upper()} "
              f"!= SHA-1 over the tampered static data: detected")
    # SDA: 93 over the same static data.
    s = raw(objs(clear["0203"]).get("93", b""), 3, issuer_n)
    f.check(s[:5] == bytes.fromhex("6A03015A5A") and s[-1] == 0xBC
            and s[5:ni - 21] == b"\xBB" * (ni - 26)
            and hashlib.sha1(s[1:ni - 21] + static).digest() == s[ni - 21:ni - 1], f"{name}: signed static data")
    # The CRT parts form the private key of the certified modulus.
    qinv, dq, dp, q, p = (clear.get(k, b"") for k in ("8201", "8202", "8203", "8204", "8205"))
    half = (nicc + 1) // 2
    f.check(all(len(x) == half for x in (qinv, dq, dp, q, p)), f"{name}: CRT parts of {half} bytes")
    P, Q = b2i(p), b2i(q)
    f.check(P * Q == icc_n, f"{name}: p*q = the certified modulus")
    lam = (P - 1) * (Q - 1) // math.gcd(P - 1, Q - 1)
    d = pow(3, -1, lam)
    f.check(b2i(dp) == d % (P - 1) and b2i(dq) == d % (Q - 1), f"{name}: dp, dq")
    f.check(b2i(qinv) == pow(Q, -1, P), f"{name}: qinv")
    msg = random.getrandbits(icc_n.bit_length() - 8)
    m1, m2 = pow(msg, b2i(dp), P), pow(msg, b2i(dq), Q)
    sig = m2 + Q * ((b2i(qinv) * (m1 - m2)) % P)
    f.check(pow(sig, 3, icc_n) == msg, f"{name}: CRT signature round trip")
    return caught


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pmp", nargs="?", default=os.environ.get("PMP_BIN", "target/debug/pmp"))
    ap.add_argument("--cards", type=int, default=6)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    rnd = random.Random(seed)
    random.seed(seed)
    f = ip.Failures()
    pmp = a.pmp
    run = ip.run
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        prep, prod = os.path.join(tmp, "prep"), os.path.join(tmp, "prod")
        for d in (prep, prod):
            p = run(pmp, "keystore", "init", "--dir", d, "--test-lmk")
            f.check(p.returncode == 0, f"keystore init: {p.stderr}")
        zc1, zc2 = rnd.randbytes(32), rnd.randbytes(32)
        zmk = ip.xor(zc1, zc2)
        for d in (prep, prod):
            run(pmp, "key", "components", "--dir", d, "--label", "ZMK", "--usage", "K0",
                "--algorithm", "aes", "--component", zc1.hex(), "--component", zc2.hex())
        keys = {}
        for name, usage, mode in (("KTK", "K0", "E"), ("PTK", "P0", "B"), ("MTK", "M6", "C"), ("DTK", "D0", "B")):
            k = rnd.randbytes(32)
            keys[name] = k
            block = psec.tr31.wrap(zmk, psec.tr31.Header("D", usage, "A", mode, "00", "E"), k)
            for d in (prep, prod):
                p = run(pmp, "key", "import", "--dir", d, "--label", name, "--kek", "ZMK", "--block", block,
                        "--usage", usage)
                f.check(p.returncode == 0, f"import {name}: {p.stderr}")
        for label, usage in (("DKEP", "D0"), ("XOF-MAC", "M6")):
            p = run(pmp, "key", "generate", "--dir", prep, "--label", label, "--usage", usage,
                    "--algorithm", "aes", "--bits", "256")
            f.check(p.returncode == 0, f"generate {label}: {p.stderr}")

        # The issuer key in the HSM; its public half for the CA.
        p = run(pmp, "key", "generate", "--dir", prep, "--label", "ISS-RSA", "--usage", "S0",
                "--algorithm", "rsa", "--bits", "1408", "--exponent", "3")
        f.check(p.returncode == 0, f"generate ISS-RSA: {p.stderr}")
        p = run(pmp, "key", "public", "--dir", prep, "--label", "ISS-RSA")
        pub = dict(line.split("=", 1) for line in p.stdout.split())
        issuer_n, issuer_e = int(pub["modulus"], 16), int(pub["exponent"], 16)
        f.check(issuer_n.bit_length() == 1408 and issuer_e == 3, "pmp key public: 1408 bits, e=3")
        # The test CA (1408 bits, e=3) certifies it: a 36-byte issuer remainder.
        ca = rsa.generate_private_key(public_exponent=3, key_size=1408)
        ca_n = ca.public_key().public_numbers().n
        issuer_cert, issuer_rem = issuer_certificate(ca, ca_n, issuer_n, issuer_e, "476173")
        f.check(len(issuer_rem) == 36, "issuer remainder of 36 bytes")
        # A terminal gets the issuer key from the CA's certificate (the chain, checked here).
        f.check(recover_issuer(ca_n, issuer_cert, issuer_rem, b"\x03") == issuer_n, "issuer certificate recovers")

        p = run(pmp, "icc-keys", "generate", "--dir", prep, "--bits", "1024", "--exponent", "3", "--count", "3")
        f.check(p.returncode == 0, f"icc-keys generate: {p.stderr}")

        for fn, content in (("product.xml", PRODUCT),):
            open(os.path.join(tmp, fn), "w").write(content)
        serials = []
        tamper_shown = False
        for run_no, (bits, n, extra) in enumerate(((1024, a.cards, []), (1408, 1, ["--no-icc-pool"]))):
            names = ["DOE/JOHN", "ROE/JANE", "MULLER/ANNA", "SMITH J"]
            cards, lines = [], ["id;pan;expiry;name"]
            for i in range(n):
                length = rnd.choice([16, 16, 19])
                pan = ip.luhn_complete("4" + "".join(rnd.choice("0123456789") for _ in range(length - 2)))
                expiry = f"{rnd.randint(27, 40):02d}{rnd.randint(1, 12):02d}"
                c = Card(f"R{run_no}-{i + 1:04d}", pan, expiry, rnd.choice(names))
                cards.append(c)
                lines.append(";".join([c.id, pan, expiry, c.name]))
            open(os.path.join(tmp, "cards.csv"), "w").write("\n".join(lines) + "\n")
            open(os.path.join(tmp, "profile.xml"), "w").write(profile(bits, issuer_cert, issuer_rem))
            xof = os.path.join(tmp, f"order{run_no}.xof")
            p = run(pmp, "import", "--dir", prep, "--product", os.path.join(tmp, "product.xml"),
                    "--in", os.path.join(tmp, "cards.csv"), "--out", xof)
            f.check(p.returncode == 0, f"pmp import: {p.stdout!r} {p.stderr!r}")
            out = os.path.join(tmp, f"production{run_no}.xml")
            p = run(pmp, "prep", "--dir", prep, "--profile", os.path.join(tmp, "profile.xml"), "--in", xof,
                    "--out", out, *extra)
            f.check(p.returncode == 0 and p.stdout.startswith(f"read={n} prepared={n} rejected=0"),
                    f"pmp prep: {p.stdout!r} {p.stderr!r}")
            if p.returncode != 0:
                break
            want = "ICC keys: 3 from the pool, %d generated in line" % (n - 3) if run_no == 0 else \
                "ICC keys: 0 from the pool, 1 generated in line"
            f.check(want in p.stdout, f"pmp prep summary says '{want}': {p.stdout!r}")
            counts.append(want)
            root = ET.fromstring(open(out, "rb").read())
            ip.check_macs(f, root, keys["MTK"], f"run {run_no}")
            run_serials = []
            for c, card in zip(cards, root.findall("card")):
                f.check(card.get("id") == c.id, f"card id {c.id}")
                dg = {d.get("id"): d for d in card.findall("dgi")}
                tamper_shown |= check_card(f, c.id, dg, c, keys, issuer_n, bits, run_serials, tamper_shown)
            f.check(len(set(run_serials)) == len(run_serials), f"run {run_no}: distinct serials in the run")
            serials += run_serials
            p = run(pmp, "production", "verify", "--dir", prod, "--in", out, "--mac-key", "MTK")
            f.check(p.returncode == 0 and p.stdout.strip() == str(n), f"production verify: {p.stdout!r} {p.stderr!r}")
    print(f"interop_icc: {a.cards} cards with 1024-bit ICC keys and 1 with 1408 under a 1408-bit issuer key "
          f"(seed {seed}; {'; '.join(counts)}), {f.checks} checks, {f.n} mismatches")
    sys.exit(1 if f.n else 0)


if __name__ == "__main__":
    main()
