#!/usr/bin/env python3
"""Independent check of data preparation (docs/profile.md, docs/production.md) with pyemv,
psec and pyca/cryptography.

Written from the text of docs/profile.md and docs/production.md (not from src/prep*):
  1. The example tests/data/production/example.xml: recompute the header MAC H, every card
     MAC M(i) (chained) and the trailer MAC T with the published MTK (docs/production.md §6,
     §8); decrypt every DGI with the published KTK / PTK / DTK and compare with what §8
     says, recomputed here: the record templates from the card table (BER-TLV and the value
     formats of docs/profile.md), DGI 8000 with pyemv (Option A), DGI 9000 (TDES KCVs),
     DGI 8010 with psec (ISO 9564 format 2); single-character tampers are caught by this
     script's check, and `pmp production verify` on a store holding the published keys
     prints 2 and exits 1 on each tampered copy.
  2. Random cards end to end through the CLI: an issuer file (clear, delimited) with random
     Luhn-valid PANs of 16 and 19 digits, PSNs, names, expiries, track 2 data and PINs
     (format 0 blocks under an issuer PIN key, made with psec and pyca); keys imported as
     TR-31 blocks made with psec (IMK-AC/SMI/SMC E0/E2/E1 mode X, KTK/PTK/MTK/DTK
     exportable); `pmp import` then `pmp prep` with option `auto`; every card of the
     production file is checked here: the MAC chain, DGI 8000 = pyemv Option A or B
     (by PAN length) for each IMK, 9000 = their KCVs, 8010 = psec format 2 of the card's
     PIN, the record DGIs = the TLVs built here from the card's data; then a second store
     (the production HSM) imports the four transport keys from the same TR-31 blocks and
     `pmp production verify` prints the card count.

Usage: scripts/interop_prep.py [PMP_BINARY] [--cards N] [--seed S]
"""

import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import warnings
import xml.etree.ElementTree as ET

warnings.filterwarnings("ignore")

from cryptography.hazmat.primitives.cmac import CMAC  # noqa: E402
from cryptography.hazmat.primitives.ciphers import algorithms, Cipher, modes  # noqa: E402
from pyemv import kd, tools  # noqa: E402
import psec.pinblock  # noqa: E402
import psec.tr31  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "tests", "data", "production", "example.xml")

# docs/production.md §8: the example's test keys.
EX_KEYS = {
    "PROD1-KTK": ("AES", "1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C1C2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A", "9C51681D3B", "K0"),
    "PROD1-PTK": ("TDES", "89ABCDEF0123456776543210FEDCBA98", "EB7A8D", "P0"),
    "PROD1-MTK": ("AES", "5F5F5F5F5F5F5F5F5F5F5F5F5F5F5F5F6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A6A", "2F0F57DABE", "M6"),
    "PROD1-DTK": ("AES", "3D3D3D3D3D3D3D3D3D3D3D3D3D3D3D3D4E4E4E4E4E4E4E4E4E4E4E4E4E4E4E4E", "4F9CEB7008", "D0"),
}
EX_IMKS = ["0123456789ABCDEFFEDCBA9876543210", "1F2F3D4C5B6B79890123456789ABCDEF",
           "A1B3C2D5E5F70719293B4A5D6D7F8F91"]
# docs/production.md §8: the cards.
EX_CARDS = [
    dict(id="C-0001", pan="12345678901234567", psn="45", expiry="2402", name="DOE/JOHN",
         track2="12345678901234567D24022011234500000", pin="1234"),
    dict(id="C-0002", pan="4111111111111111", psn=None, expiry="2512", name="ROE/JANE",
         track2="4111111111111111D2512201123450000", pin="987654"),
]

PROFILE = """<profile format="pmp-profile-1" name="INTEROP-EMV" product="INTEROP">
  <keys ktk="PROD1-KTK" ptk="PROD1-PTK" mtk="PROD1-MTK" dtk="PROD1-DTK" xof-mac-key="XOF-MAC"/>
  <icc-keys option="auto" imk-ac="IMK-AC" imk-smi="IMK-SMI" imk-smc="IMK-SMC"
            pan="PAN" psn="PAN_SEQ" psn-default="00"/>
  <dgi id="0101"><tag id="57" from="TRACK2" format="track2"/><tag id="5F20" from="NAME" format="ans"/></dgi>
  <dgi id="0102"><tag id="5A" from="PAN" format="cn"/><tag id="5F24" from="EXPIRY" format="yymm-end-of-month"/>
                 <tag id="5F34" from="PAN_SEQ" format="n" default="00"/><tag id="9F08" value="0096"/></dgi>
  <dgi id="0201"><tag id="9F42" value="0978"/></dgi>
  <dgi id="8000" content="icc-master-keys"/>
  <dgi id="9000" content="icc-master-key-kcvs"/>
  <dgi id="8010" content="pin-block"/>
  <dgi id="9010" value="0303"/>
</profile>
"""

PRODUCT = """<product format="pmp-product-1" name="INTEROP" issuer="INTEROP-BANK">
  <keys>
    <issuer-pin-key label="ISSUER-PIN" format="0"/>
    <bureau-pin-key label="BUREAU-PIN" format="4"/>
    <mac-key label="XOF-MAC"/>
  </keys>
  <layout kind="delimited" separator=";" header="true" record-id="id"/>
  <fields>
    <field name="id" required="true"/>
    <field name="pan" required="true" check="pan" attribute="PAN" dkep="DKEP"/>
    <field name="psn" attribute="PAN_SEQ" dkep="DKEP"/>
    <field name="expiry" required="true" check="yymm" attribute="EXPIRY" dkep="DKEP"/>
    <field name="name" required="true" check="name" max-length="26" attribute="NAME" dkep="DKEP"/>
    <field name="track2" required="true" attribute="TRACK2" dkep="DKEP"/>
    <field name="pin_block" required="true" role="pin-block" pan-field="pan" attribute="PIN_BLOCK"/>
  </fields>
</product>
"""


class Failures:
    def __init__(self):
        self.n = 0
        self.checks = 0

    def check(self, ok, what):
        self.checks += 1
        if not ok:
            self.n += 1
            print("MISMATCH:", what, file=sys.stderr)


# ---- primitives (pyca) ----

def cmac(key, data):
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def cipher(alg, key, mode, iv=None):
    a = algorithms.AES(key) if alg == "AES" else tools_tdes(key)
    m = modes.ECB() if mode == "ecb" else modes.CBC(iv)
    return Cipher(a, m)


def tools_tdes(key):
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # older pyca
        from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES
    return TripleDES(key)


def decrypt(alg, key, mode, iv, data):
    d = cipher(alg, key, mode, iv).decryptor()
    return d.update(data) + d.finalize()


def unpad2(b):
    i = b.rstrip(b"\x00")
    if not i.endswith(b"\x80"):
        return None
    return i[:-1]


def kcv(alg, key):
    if alg == "AES":
        return cmac(key, bytes(16))[:5]
    return tools.encrypt_tdes_ecb(key, bytes(8))[:3]


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


# ---- docs/production.md §6 ----

def lp(x):
    if isinstance(x, str):
        x = x.encode("utf-8")
    return len(x).to_bytes(4, "big") + x


MODE = {None: b"\x00", "ecb": b"\x01", "cbc": b"\x02"}
PAD = {None: b"\x00", "none": b"\x00", "2": b"\x02"}


def header_input(root):
    h = root.find("header")
    out = b"PRD1-HDR" + lp(root.get("version"))
    for a in ("order-id", "issuer", "product", "profile", "created", "mac-key"):
        out += lp(h.get(a))
    keys = h.findall("key")
    out += len(keys).to_bytes(4, "big")
    for k in keys:
        out += lp(k.get("label")) + lp(k.get("usage")) + lp(k.get("algorithm")) + lp(bytes.fromhex(k.get("kcv")))
    if h.get("test") == "true":
        out += lp("test") + lp("true")
    return out


def card_input(hmac, prev, card):
    out = b"PRD1-CRD" + hmac + prev + int(card.get("seq")).to_bytes(8, "big") + lp(card.get("id"))
    dgis = card.findall("dgi")
    out += len(dgis).to_bytes(4, "big")
    for d in dgis:
        out += bytes.fromhex(d.get("id"))
        out += lp(d.get("key") or "") + MODE[d.get("mode")] + lp(bytes.fromhex(d.get("iv") or ""))
        out += PAD[d.get("padding")] + lp(bytes.fromhex((d.text or "").strip()))
    return out


def check_macs(f, root, mtk, name):
    hmac = bytes.fromhex(root.find("header").get("mac"))
    f.check(cmac(mtk, header_input(root)) == hmac, f"{name}: header MAC")
    chain = hmac
    cards = root.findall("card")
    ok = True
    for i, c in enumerate(cards, 1):
        f.check(c.get("seq") == str(i), f"{name}: card {i} seq")
        m = cmac(mtk, card_input(hmac, chain, c))
        if m != bytes.fromhex(c.get("mac")):
            ok = False
        f.check(m == bytes.fromhex(c.get("mac")), f"{name}: card {i} MAC")
        chain = m
    t = root.find("trailer")
    f.check(t.get("cards") == str(len(cards)), f"{name}: trailer count")
    tm = cmac(mtk, b"PRD1-END" + hmac + chain + len(cards).to_bytes(8, "big"))
    f.check(tm == bytes.fromhex(t.get("mac")), f"{name}: trailer MAC")
    return ok and tm == bytes.fromhex(t.get("mac"))


def macs_ok(root, mtk):
    """True when every MAC verifies (used on tampered copies, without counting checks)."""
    hmac = bytes.fromhex(root.find("header").get("mac"))
    if cmac(mtk, header_input(root)) != hmac:
        return False
    chain = hmac
    cards = root.findall("card")
    for i, c in enumerate(cards, 1):
        if c.get("seq") != str(i):
            return False
        m = cmac(mtk, card_input(hmac, chain, c))
        if m != bytes.fromhex(c.get("mac")):
            return False
        chain = m
    t = root.find("trailer")
    tm = cmac(mtk, b"PRD1-END" + hmac + chain + len(cards).to_bytes(8, "big"))
    return t.get("cards") == str(len(cards)) and tm == bytes.fromhex(t.get("mac"))


# ---- docs/profile.md: value formats and BER-TLV ----

def ber_len(n):
    if n <= 127:
        return bytes([n])
    if n <= 255:
        return bytes([0x81, n])
    return bytes([0x82, n >> 8, n & 255])


def tlv(tag_hex, value):
    return bytes.fromhex(tag_hex) + ber_len(len(value)) + value


def fmt_cn(d):
    return bytes.fromhex(d + ("F" if len(d) % 2 else ""))


def fmt_n(d):
    return bytes.fromhex(("0" if len(d) % 2 else "") + d)


def fmt_track2(t):
    t = t.replace("=", "D")
    return bytes.fromhex(t + ("F" if len(t) % 2 else ""))


def fmt_eom(yymm):
    yy, mm = int(yymm[:2]), int(yymm[2:])
    days = [31, 29 if yy % 4 == 0 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mm - 1]
    return bytes.fromhex(yymm + f"{days:02d}")


def expected_records(c):
    psn = c["psn"] or "00"
    r1 = tlv("70", tlv("57", fmt_track2(c["track2"])) + tlv("5F20", c["name"].encode()))
    r2 = tlv("70", tlv("5A", fmt_cn(c["pan"])) + tlv("5F24", fmt_eom(c["expiry"]))
             + tlv("5F34", fmt_n(psn)) + tlv("9F08", bytes.fromhex("0096")))
    return {"0101": r1, "0102": r2}


def icc_keys(imks, pan, psn, option):
    f = kd.derive_icc_mk_a if option == "A" else kd.derive_icc_mk_b
    return [f(k, pan, psn) for k in imks]


def check_card(f, name, dg, c, imks, keys, option, extra=None):
    """Checks the DGIs `dg` (id -> element) of card `c` against values recomputed here."""
    ktk_alg, ktk = keys["KTK"]
    ptk_alg, ptk = keys["PTK"]
    dtk_alg, dtk = keys["DTK"]
    want = expected_records(c)
    if extra:
        want.update(extra)
    for rid, w in want.items():
        d = dg.get(rid)
        f.check(d is not None, f"{name}: DGI {rid} present")
        if d is None:
            continue
        data = bytes.fromhex(d.text.strip())
        if d.get("key") is None:
            f.check(data == w, f"{name}: DGI {rid} clear value")
            continue
        f.check((d.get("key"), d.get("mode"), d.get("padding")) == (keys["DTK_LABEL"], "cbc", "2"),
                f"{name}: DGI {rid} under the DTK, cbc, padding 2")
        clear = unpad2(decrypt(dtk_alg, dtk, "cbc", bytes.fromhex(d.get("iv")), data))
        f.check(clear == w, f"{name}: DGI {rid} = {w.hex().upper()}, got {clear.hex().upper() if clear else None}")
    psn = c["psn"] or "00"
    mks = icc_keys(imks, c["pan"], psn, option)
    d = dg.get("8000")
    f.check(d is not None and (d.get("mode"), d.get("padding")) == ("ecb", "none"), f"{name}: 8000 ecb none")
    if d is not None:
        clear = decrypt(ktk_alg, ktk, "ecb", None, bytes.fromhex(d.text.strip()))
        f.check(clear == b"".join(mks), f"{name}: 8000 = pyemv Option {option}")
    d = dg.get("9000")
    f.check(d is not None and bytes.fromhex(d.text.strip()) == b"".join(kcv("TDES", k) for k in mks),
            f"{name}: 9000 = KCVs")
    d = dg.get("8010")
    f.check(d is not None and d.get("mode") == "ecb", f"{name}: 8010 ecb")
    if d is not None:
        clear = decrypt(ptk_alg, ptk, "ecb", None, bytes.fromhex(d.text.strip()))
        if ptk_alg == "AES":
            clear = unpad2(clear)
        f.check(clear == psec.pinblock.encode_pinblock_iso_2(c["pin"]), f"{name}: 8010 = psec format 2")
    d = dg.get("9010")
    f.check(d is not None and d.text.strip() == "0303", f"{name}: 9010")


def run(pmp, *args):
    return subprocess.run([pmp, *args], capture_output=True, text=True)


def luhn_complete(body):
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def example(f, pmp, tmp):
    text = open(EXAMPLE, "rb").read().decode("utf-8")
    root = ET.fromstring(text)
    keys = {}
    for label, (alg, k, want_kcv, usage) in EX_KEYS.items():
        kb = bytes.fromhex(k)
        f.check(kcv(alg, kb).hex().upper() == want_kcv, f"example: {label} KCV")
        keys[label] = (alg, kb)
    listed = {k.get("label"): (k.get("usage"), k.get("algorithm"), k.get("kcv")) for k in root.find("header")}
    for label, (alg, _, want_kcv, usage) in EX_KEYS.items():
        f.check(listed.get(label) == (usage, alg, want_kcv), f"example: key list {label}")
    mtk = keys["PROD1-MTK"][1]
    check_macs(f, root, mtk, "example")
    imks = [bytes.fromhex(k) for k in EX_IMKS]
    ks = {"KTK": keys["PROD1-KTK"], "PTK": keys["PROD1-PTK"], "DTK": keys["PROD1-DTK"], "DTK_LABEL": "PROD1-DTK"}
    cards = root.findall("card")
    f.check(len(cards) == 2, "example: two cards")
    for c, card in zip(EX_CARDS, cards):
        f.check(card.get("id") == c["id"], f"example: id {c['id']}")
        dg = {d.get("id"): d for d in card.findall("dgi")}
        f.check(list(dg) == ["0101", "0102", "8000", "9000", "8010", "9010"], f"example {c['id']}: DGI order")
        check_card(f, f"example {c['id']}", dg, c, imks, ks, "A")

    # Tampers: one character each, caught here (and by pmp below).
    tampers = {
        "DGI data digit": text.replace("<dgi id=\"9010\">0303", "<dgi id=\"9010\">0304", 1),
        "card id": text.replace("id=\"C-0002\"", "id=\"C-0003\"", 1),
        "profile": text.replace("profile=\"VISA-CLASSIC-EMV\"", "profile=\"VISA-CLASSIC-EMW\"", 1),
        "trailer count": text.replace("cards=\"2\"", "cards=\"1\"", 1),
        "DGI number": text.replace("<dgi id=\"9000\">", "<dgi id=\"9001\">", 1),
    }
    i = text.index(" iv=\"") + 5
    tampers["IV digit"] = text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1:]
    for what, t in tampers.items():
        f.check(t != text and not macs_ok(ET.fromstring(t), mtk), f"example tamper {what}: caught here")

    # pmp production verify on a store holding the published keys (two components each).
    store = os.path.join(tmp, "example-store")
    run(pmp, "keystore", "init", "--dir", store, "--test-lmk")
    for label, (alg, k, want_kcv, usage) in EX_KEYS.items():
        kb = bytes.fromhex(k)
        c2 = bytes((i * 37 + 5) & 0xFF | 1 for i in range(len(kb)))
        p = run(pmp, "key", "components", "--dir", store, "--label", label, "--usage", usage,
                "--algorithm", alg.lower(), "--component", xor(kb, c2).hex(), "--component", c2.hex(),
                "--kcv", want_kcv)
        f.check(p.returncode == 0, f"example store: {label}: {p.stderr}")
    path = os.path.join(tmp, "example.xml")
    open(path, "w").write(text)
    p = run(pmp, "production", "verify", "--dir", store, "--in", path)
    f.check(p.returncode == 0 and p.stdout.strip() == "2", f"pmp production verify example: {p.stdout!r} {p.stderr!r}")
    for n, (what, t) in enumerate(tampers.items()):
        tp = os.path.join(tmp, f"tamper-{n}.xml")
        open(tp, "w").write(t)
        p = run(pmp, "production", "verify", "--dir", store, "--in", tp)
        f.check(p.returncode == 1 and p.stdout == "", f"pmp, example tamper {what}: {p.returncode} {p.stdout!r}")


def random_cards(f, pmp, tmp, n, rnd):
    prep = os.path.join(tmp, "prep-store")
    prod = os.path.join(tmp, "prod-store")
    for d in (prep, prod):
        p = run(pmp, "keystore", "init", "--dir", d, "--test-lmk")
        f.check(p.returncode == 0, f"keystore init: {p.stderr}")
    zc1, zc2 = rnd.randbytes(32), rnd.randbytes(32)
    zmk = xor(zc1, zc2)
    for d in (prep, prod):
        p = run(pmp, "key", "components", "--dir", d, "--label", "ZMK", "--usage", "K0",
                "--algorithm", "aes", "--component", zc1.hex(), "--component", zc2.hex())
        f.check(p.returncode == 0, f"ZMK: {p.stderr}")

    def imp(store, label, usage, alg_code, mode, exp, key):
        block = psec.tr31.wrap(zmk, psec.tr31.Header("D", usage, alg_code, mode, "00", exp), key)
        p = run(pmp, "key", "import", "--dir", store, "--label", label, "--kek", "ZMK", "--block", block,
                "--usage", usage)
        f.check(p.returncode == 0, f"import {label}: {p.stderr}")
        return block

    imks = [tools.adjust_key_parity(rnd.randbytes(16)) for _ in range(3)]
    for label, usage, k in zip(("IMK-AC", "IMK-SMI", "IMK-SMC"), ("E0", "E2", "E1"), imks):
        imp(prep, label, usage, "T", "X", "N", k)
    tk = {
        "KTK": ("AES", rnd.randbytes(32), "K0", "A", "E"),
        "PTK": ("TDES", tools.adjust_key_parity(rnd.randbytes(16)), "P0", "T", "B"),
        "MTK": ("AES", rnd.randbytes(32), "M6", "A", "C"),
        "DTK": ("AES", rnd.randbytes(32), "D0", "A", "B"),
    }
    for name, (alg, k, usage, code, mode) in tk.items():
        for store in (prep, prod):
            imp(store, f"PROD1-{name}", usage, code, mode, "E", k)
    issuer_pin = tools.adjust_key_parity(rnd.randbytes(16))
    imp(prep, "ISSUER-PIN", "P0", "T", "D", "N", issuer_pin)
    for args in (("BUREAU-PIN", "P0", "aes", "256"), ("DKEP", "D0", "aes", "256"), ("XOF-MAC", "M6", "aes", "256")):
        label, usage, alg, bits = args
        p = run(pmp, "key", "generate", "--dir", prep, "--label", label, "--usage", usage,
                "--algorithm", alg, "--bits", bits)
        f.check(p.returncode == 0, f"generate {label}: {p.stderr}")

    names = ["DOE/JOHN", "ROE/JANE", "MULLER/ANNA", "O'BRIEN/PAT", "SMITH J"]
    cards = []
    lines = ["id;pan;psn;expiry;name;track2;pin_block"]
    for i in range(n):
        length = rnd.choice([16, 16, 19])
        pan = luhn_complete("4" + "".join(rnd.choice("0123456789") for _ in range(length - 2)))
        psn = rnd.choice([None, "00", "01", "07", "42"])
        yy, mm = rnd.randint(27, 40), rnd.randint(1, 12)
        expiry = f"{yy:02d}{mm:02d}"
        name = rnd.choice(names)
        track2 = f"{pan}D{expiry}201{rnd.randint(0, 99999):05d}"
        pin = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(4, 6)))
        block = psec.pinblock.encode_pinblock_iso_0(pin, pan)
        enc = Cipher(tools_tdes(issuer_pin), modes.ECB()).encryptor()
        pin_block = (enc.update(block) + enc.finalize()).hex().upper()
        cid = f"R{i + 1:05d}"
        cards.append(dict(id=cid, pan=pan, psn=psn, expiry=expiry, name=name, track2=track2, pin=pin))
        lines.append(";".join([cid, pan, psn or "", expiry, name, track2, pin_block]))
    for fn, content in (("product.xml", PRODUCT), ("profile.xml", PROFILE), ("cards.csv", "\n".join(lines) + "\n")):
        open(os.path.join(tmp, fn), "w").write(content)
    xof = os.path.join(tmp, "order.xof")
    p = run(pmp, "import", "--dir", prep, "--product", os.path.join(tmp, "product.xml"),
            "--in", os.path.join(tmp, "cards.csv"), "--out", xof)
    f.check(p.returncode == 0 and p.stdout.startswith(f"read={n} written={n} rejected=0"),
            f"pmp import: {p.stdout!r} {p.stderr!r}")
    out = os.path.join(tmp, "production.xml")
    p = run(pmp, "prep", "--dir", prep, "--profile", os.path.join(tmp, "profile.xml"), "--in", xof, "--out", out)
    f.check(p.returncode == 0 and p.stdout.startswith(f"read={n} prepared={n} rejected=0"),
            f"pmp prep: {p.stdout!r} {p.stderr!r}")
    if p.returncode != 0:
        return
    root = ET.fromstring(open(out, "rb").read())
    f.check(root.find("header").get("test") == "true", "random: prepared on TEST stores, so TEST-marked")
    check_macs(f, root, tk["MTK"][1], "random")
    keys = {k: (tk[k][0], tk[k][1]) for k in ("KTK", "PTK", "DTK")}
    keys["DTK_LABEL"] = "PROD1-DTK"
    by_option = {"A": 0, "B": 0}
    for c, card in zip(cards, root.findall("card")):
        f.check(card.get("id") == c["id"], f"random: card id {c['id']}")
        dg = {d.get("id"): d for d in card.findall("dgi")}
        option = "A" if len(c["pan"]) <= 16 else "B"
        by_option[option] += 1
        check_card(f, f"random {c['id']}", dg, c, imks, keys, option,
                   extra={"0201": tlv("70", tlv("9F42", bytes.fromhex("0978")))})
    p = run(pmp, "production", "verify", "--dir", prod, "--in", out, "--mac-key", "PROD1-MTK")
    f.check(p.returncode == 0 and p.stdout.strip() == str(n), f"production verify: {p.stdout!r} {p.stderr!r}")
    return by_option


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pmp", nargs="?", default=os.environ.get("PMP_BIN", "target/debug/pmp"))
    ap.add_argument("--cards", type=int, default=60)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    rnd = random.Random(seed)
    f = Failures()
    with tempfile.TemporaryDirectory() as tmp:
        example(f, a.pmp, tmp)
        by_option = random_cards(f, a.pmp, tmp, a.cards, rnd) or {}
    print(f"interop_prep: example (2 cards) and {a.cards} random cards (seed {seed}, "
          f"Option A {by_option.get('A', 0)}, Option B {by_option.get('B', 0)}), "
          f"{f.checks} checks, {f.n} mismatches")
    sys.exit(1 if f.n else 0)


if __name__ == "__main__":
    main()
