#!/usr/bin/env python3
"""Independent check of the XOF v1 integrity format (docs/xof.md) with pyca/cryptography.

Written from the text of docs/xof.md only (not from src/xof*). On tests/data/xof/example.xof:
  1. parse it with Python's XML parser, rebuild the canonical MAC inputs of docs/xof.md §6
     and recompute, with the example's published MAC key (§8), the header MAC H, every record
     MAC M(i) (chained: C(0) = H, C(i) = M(i)) and the trailer MAC T; compare with the file;
     also the §8 prefix of the header MAC input, the published keys (component XOR, KCVs) and
     the key list, seq numbering and trailer count;
  2. decrypt every attribute with the published DKep and compare with the PANs of §8; check
     the padding is the one the attribute declares;
  3. changes that §1 says do not touch the MACs (hex case, attribute order, re-indentation,
     character references, whitespace around the ciphertext) still verify, here and in pmp; single-character tampers (a ciphertext digit, an IV
     digit, an issuer-id, the order-id, the trailer count) are caught by this script's check;
  4. `pmp xof verify` on a key store holding the example's keys (formed from two components
     with `pmp key components`) exits 0 and prints the record count, also with
     `--mac-key XOF-MAC`; it exits 1 on every tampered copy, with `--mac-key DK-PAN`, and when
     the store's XOF-MAC (same key value, imported from a psec TR-31 block) is exportable;
  5. the TEST marker (`test="true"`): a marked copy with every MAC recomputed by this script
     verifies in pmp on a TEST store (reported on stderr); the marker added or stripped
     without new MACs fails the header MAC; on a production store (keys formed by two
     officers) every order under a MAC key formed from stated components is refused, TEST
     or not, since a production XOF MAC key must be generated in the HSM.

Usage: scripts/interop_xof.py [PMP_BINARY] [--file example.xof]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import warnings
import xml.etree.ElementTree as ET

warnings.filterwarnings("ignore")

from cryptography.hazmat.primitives.cmac import CMAC  # noqa: E402
from cryptography.hazmat.primitives.ciphers import algorithms, Cipher, modes  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "tests", "data", "xof", "example.xof")

# docs/xof.md §8: the example's published test keys (component 1, component 2, key, KCV).
KEYS = {
    "XOF-MAC": ("M6", "C", "00112233445566778899AABBCCDDEEFF", "0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F0F",
                "0F1E2D3C4B5A69788796A5B4C3D2E1F0", "270389F4B0"),
    "DK-PAN": ("D0", "B", "2B7E151628AED2A6ABF7158809CF4F3C", "01010101010101010101010101010101",
               "2A7F141729AFD3A7AAF6148908CE4E3D", "65E3953E6C"),
}
# docs/xof.md §8: "The records hold the PANs 4111111111111111 and 5500000000000004".
PANS = ["4111111111111111", "5500000000000004"]
HDR_PREFIX = bytes.fromhex("584F46312D484452" "0000000131" "0000000D4F5244")

MODE_BYTE = {"ECB": b"\x01", "CBC": b"\x02"}
PAD_BYTE = {"none": b"\x00", "2": b"\x02", "pkcs7": b"\x07"}
BLOCK = {"AES": 16, "TDES": 8}


class Failures:
    def __init__(self):
        self.n = 0
        self.checks = 0

    def check(self, ok: bool, what: str):
        self.checks += 1
        if not ok:
            self.n += 1
            print("MISMATCH:", what, file=sys.stderr)


def lp(x) -> bytes:
    if isinstance(x, str):
        x = x.encode("utf-8")
    return len(x).to_bytes(4, "big") + x


def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def hexbytes(s: str) -> bytes:
    """Element text / hex attribute: one run of hex digits (either case); §1 allows
    whitespace around the run in element text, not inside it."""
    s = s.strip(" \t\r\n")
    if not re.fullmatch(r"(?:[0-9A-Fa-f]{2})*", s):
        raise ValueError(f"not hex: {s!r}")
    return bytes.fromhex(s)


def decimal(s: str) -> int:
    if not re.fullmatch(r"[0-9]{1,20}", s) or int(s) >= 1 << 64:
        raise ValueError(f"not a decimal u64: {s!r}")
    return int(s)


def header_input(version: str, hdr, keys) -> bytes:
    a = hdr.attrib
    out = (b"XOF1-HDR" + lp(version) + lp(a["order-id"]) + lp(a["issuer"])
           + lp(a["product"]) + lp(a["created"]) + lp(a["mac-key"]) + u32(len(keys)))
    for k in keys:
        out += lp(k.get("label")) + lp(k.get("usage")) + lp(k.get("algorithm")) + lp(hexbytes(k.get("kcv")))
    # §2/§6: the TEST marker, MACed when present (a production header's input is unchanged).
    if a.get("test") is not None:
        out += lp("test") + lp(a["test"])
    return out


def remac(text: str, mac_key: bytes) -> str:
    """The file with every MAC recomputed by this script (for edits that change H)."""
    root = parse(text.encode("utf-8"))
    hdr = root.find("header")
    h = cmac(mac_key, header_input(root.get("version"), hdr, list(hdr)))
    subst = {hdr.get("mac"): h}
    prev = h
    recs = root.findall("record")
    for rec in recs:
        m = cmac(mac_key, record_input(h, prev, rec))
        subst[rec.get("mac")] = m
        prev = m
    subst[root.find("trailer").get("mac")] = cmac(mac_key, trailer_input(h, prev, len(recs)))
    for old, new in subst.items():
        assert text.count(f'mac="{old}"') == 1, old
        text = text.replace(f'mac="{old}"', f'mac="{new.hex().upper()}"')
    return text


def record_input(h: bytes, prev: bytes, rec) -> bytes:
    attrs = list(rec)
    out = (b"XOF1-REC" + h + prev + u64(decimal(rec.get("seq"))) + lp(rec.get("issuer-id"))
           + u32(len(attrs)))
    for at in attrs:
        iv = hexbytes(at.get("iv")) if at.get("iv") is not None else b""
        out += (lp(at.get("name")) + lp(at.get("key")) + MODE_BYTE[at.get("mode")] + lp(iv)
                + PAD_BYTE[at.get("padding")] + lp(hexbytes(at.text or "")))
    return out


def trailer_input(h: bytes, last: bytes, n: int) -> bytes:
    return b"XOF1-END" + h + last + u64(n)


def parse(data: bytes):
    if b"<!DOCTYPE" in data.upper():
        raise ValueError("DOCTYPE present")
    root = ET.fromstring(data)
    return root


def verify(data: bytes, mac_key: bytes):
    """The script's own reader: returns (problems, info). problems is empty for an intact file."""
    problems = []
    info = {"records": 0, "mac_errors": [], "count_error": None}
    root = parse(data)
    children = list(root)
    if root.tag != "xof" or root.get("version") != "1":
        problems.append(f"root {root.tag} version {root.get('version')}")
    hdr, recs, trl = children[0], children[1:-1], children[-1]
    if hdr.tag != "header" or trl.tag != "trailer" or any(r.tag != "record" for r in recs):
        problems.append("element order")
    keys = list(hdr)
    klist = {k.get("label"): k for k in keys}
    mk = klist.get(hdr.get("mac-key"))
    if mk is None or mk.get("usage") != "M6" or mk.get("algorithm") != "AES":
        problems.append("mac-key not an AES M6 key of the list")
    elif hexbytes(mk.get("kcv")) != cmac(mac_key, bytes(16))[:5]:
        problems.append("mac-key KCV differs from the key used")
    hin = header_input(root.get("version"), hdr, keys)
    info["header_input"] = hin
    h = cmac(mac_key, hin)
    info["H"] = h
    if h != hexbytes(hdr.get("mac")):
        problems.append("header MAC does not verify")
        info["mac_errors"].append("H")
    prev = h
    for i, rec in enumerate(recs, 1):
        if decimal(rec.get("seq")) != i:
            problems.append(f"record {i}: seq {rec.get('seq')}")
        for at in rec:
            k = klist.get(at.get("key"))
            if k is None or at.get("key") == hdr.get("mac-key"):
                problems.append(f"record {i}: attr key {at.get('key')}")
                continue
            b = BLOCK[k.get("algorithm")]
            ct = hexbytes(at.text or "")
            if not ct or len(ct) % b:
                problems.append(f"record {i}: ciphertext not whole blocks")
            if (at.get("mode") == "CBC") != (at.get("iv") is not None) or (
                    at.get("iv") is not None and len(hexbytes(at.get("iv"))) != b):
                problems.append(f"record {i}: iv")
        m = cmac(mac_key, record_input(h, prev, rec))
        info.setdefault("M", []).append(m)
        if m != hexbytes(rec.get("mac")):
            problems.append(f"record {i}: record MAC does not verify")
            info["mac_errors"].append(f"M({i})")
        # §6: the chain value is the record MAC read from the file (after it verified).
        prev = hexbytes(rec.get("mac"))
        info["records"] = i
    declared = decimal(trl.get("records"))
    if declared != len(recs):
        problems.append(f"trailer declares {declared} records, file has {len(recs)}")
        info["count_error"] = (declared, len(recs))
    t = cmac(mac_key, trailer_input(h, prev, len(recs)))
    info["T"] = t
    info["T_declared"] = cmac(mac_key, trailer_input(h, prev, declared))
    if t != hexbytes(trl.get("mac")):
        problems.append("trailer MAC does not verify")
        info["mac_errors"].append("T")
    return problems, info


def unpad(alg_block: int, padding: str, pt: bytes):
    """Returns the plaintext with the declared padding removed, or None when it is malformed."""
    if padding == "none":
        return pt
    if padding == "2":
        s = pt.rstrip(b"\0")
        return s[:-1] if s.endswith(b"\x80") else None
    if padding == "pkcs7":
        n = pt[-1] if pt else 0
        return pt[:-n] if 1 <= n <= alg_block and pt.endswith(bytes([n]) * n) else None
    return None


def decrypt_all(data: bytes, f: Failures):
    root = parse(data)
    hdr = root.find("header")
    klist = {k.get("label"): k for k in hdr}
    values = []
    for rec in root.findall("record"):
        for at in rec:
            label = at.get("key")
            key = bytes.fromhex(KEYS[label][4])
            f.check(klist[label].get("algorithm") == "AES", f"{label} algorithm")
            mode = modes.CBC(hexbytes(at.get("iv"))) if at.get("mode") == "CBC" else modes.ECB()
            d = Cipher(algorithms.AES(key), mode).decryptor()
            pt = d.update(hexbytes(at.text)) + d.finalize()
            v = unpad(16, at.get("padding"), pt)
            f.check(v is not None, f"record {rec.get('seq')} {at.get('name')}: padding "
                                   f"{at.get('padding')!r} malformed: {pt.hex()}")
            # The spec's other paddings must not also fit (method 2 vs PKCS#7 are distinct here).
            for other in ("2", "pkcs7"):
                if other != at.get("padding"):
                    f.check(unpad(16, other, pt) is None,
                            f"record {rec.get('seq')}: plaintext also fits padding {other!r}")
            values.append((at.get("name"), v))
    return values


def run(pmp, *args):
    return subprocess.run([pmp, *args], capture_output=True, text=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pmp", nargs="?", default=os.environ.get("PMP_BIN", "target/debug/pmp"))
    ap.add_argument("--file", default=EXAMPLE)
    a = ap.parse_args()
    f = Failures()
    text = open(a.file, "rb").read().decode("utf-8")
    data = text.encode("utf-8")

    # Published keys: component XOR and KCVs (AES: CMAC of a zero block, 5 bytes).
    for label, (_, _, c1, c2, key, kcv) in KEYS.items():
        k = bytes.fromhex(key)
        f.check(xor(bytes.fromhex(c1), bytes.fromhex(c2)) == k, f"{label}: c1 XOR c2 != key")
        f.check(cmac(k, bytes(16))[:5].hex().upper() == kcv, f"{label}: KCV")
    mac_key = bytes.fromhex(KEYS["XOF-MAC"][4])

    # 1. MACs.
    root = parse(data)
    hdr = root.find("header")
    for k in hdr:
        f.check(k.get("kcv") == KEYS[k.get("label")][5] and k.get("usage") == KEYS[k.get("label")][0],
                f"key list entry {k.attrib}")
    problems, info = verify(data, mac_key)
    for p in problems:
        f.check(False, f"example.xof: {p}")
    f.check(not problems, "example.xof verifies")
    f.check(info["records"] == 2, f"records {info['records']}")
    f.check(info["header_input"].startswith(HDR_PREFIX), "header MAC input prefix of §8")
    f.check(info["H"].hex().upper() == hdr.get("mac"), "H")
    for i, rec in enumerate(root.findall("record")):
        f.check(info["M"][i].hex().upper() == rec.get("mac"), f"M({i + 1})")
    f.check(info["T"].hex().upper() == root.find("trailer").get("mac"), "T")

    # Interpretation probes (the spec's hex values MACed as decoded bytes, not hex text):
    # an IV or ciphertext LP'ed as its hex text must NOT give the file's M(1).
    rec1 = root.find("record")
    at1 = rec1[0]
    alt = (b"XOF1-REC" + info["H"] + info["H"] + u64(1) + lp(rec1.get("issuer-id")) + u32(1)
           + lp(at1.get("name")) + lp(at1.get("key")) + b"\x02" + lp(at1.get("iv"))
           + b"\x02" + lp(at1.text))
    f.check(cmac(mac_key, alt).hex().upper() != rec1.get("mac"), "M(1) also matches hex-text IV/ciphertext")

    # 2. Decryption.
    values = decrypt_all(data, f)
    got = [v.decode("ascii", "replace") if v is not None else None for _, v in values]
    f.check([n for n, _ in values] == ["PAN", "PAN"], f"attribute names {[n for n, _ in values]}")
    f.check(got == PANS, f"PANs {got} != {PANS}")

    # 3. Changes that keep the MACs (§1) and single-character tampers.
    same = {
        "lowercase hex": re.sub(r'(mac|iv|kcv)="([0-9A-F]+)"', lambda m: f'{m[1]}="{m[2].lower()}"',
                                re.sub(r">([0-9A-F]+)</attr>", lambda m: f">{m[1].lower()}</attr>", text)),
        "attribute order": text.replace('seq="1" issuer-id="C-0001"', 'issuer-id="C-0001" seq="1"')
                               .replace('<trailer records="2" mac="73817E572F7BBF89A3C94F79ABFE5637"/>',
                                        '<trailer mac="73817E572F7BBF89A3C94F79ABFE5637" records="2"/>'),
        "re-indented": text.replace("\n  <", "\n\t\t<").replace("\n<record", "\n\n  <record"),
        "character references": text.replace('issuer="Example Bank"', 'issuer="&#x45;xample&#32;Bank"')
                                    .replace('issuer-id="C-0002"', 'issuer-id="C&#45;0002"'),
        "ciphertext between whitespace": text.replace(">D0A97526", ">\n    D0A97526")
                                             .replace("D6C2C030<", "D6C2C030\n  <"),
    }
    for what, t in same.items():
        f.check(t != text, f"{what}: no change made")
        p, _ = verify(t.encode(), mac_key)
        f.check(not p, f"{what}: must still verify: {p}")

    def flip(s: str, old: str, new: str) -> str:
        assert text.count(old) == 1, old
        return s.replace(old, new)

    tampers = {
        "ciphertext digit": flip(text, ">D0A97526", ">D0A97527"),
        "iv digit": flip(text, 'iv="02030405', 'iv="02030406'),
        "issuer-id": flip(text, 'issuer-id="C-0002"', 'issuer-id="C-0003"'),
        "order-id": flip(text, 'order-id="ORD-2025-0042"', 'order-id="ORD-2025-0043"'),
        "trailer count": flip(text, 'records="2"', 'records="3"'),
        "record seq": flip(text, 'seq="2"', 'seq="3"'),
    }
    expect_mac = {
        "ciphertext digit": ["M(1)"],
        "iv digit": ["M(2)"],
        "issuer-id": ["M(2)"],
        "order-id": ["H", "M(1)", "M(2)", "T"],
        "trailer count": [],  # §6: T covers n = records in the file, not the declared count
        "record seq": ["M(2)"],
    }
    for what, t in tampers.items():
        p, inf = verify(t.encode(), mac_key)
        f.check(bool(p), f"tamper {what}: not detected")
        f.check(inf["mac_errors"] == expect_mac[what],
                f"tamper {what}: MAC failures {inf['mac_errors']} != {expect_mac[what]}")
    _, inf = verify(tampers["trailer count"].encode(), mac_key)
    f.check(inf["count_error"] == (3, 2), f"trailer count: count check {inf['count_error']}")
    # Under the other reading of n (the declared count) T would not verify either.
    f.check(inf["T_declared"].hex().upper() != root.find("trailer").get("mac"),
            "trailer count: T over the declared count still matches")

    # 4. The binary.
    with tempfile.TemporaryDirectory() as tmp:
        ks = os.path.join(tmp, "ks")
        p = run(a.pmp, "keystore", "init", "--dir", ks, "--test-lmk")
        f.check(p.returncode == 0, f"keystore init: {p.stderr}")
        for label, (usage, mode, c1, c2, _, kcv) in KEYS.items():
            p = run(a.pmp, "key", "components", "--dir", ks, "--label", label, "--usage", usage,
                    "--algorithm", "aes", "--mode", mode, "--component", c1, "--component", c2, "--kcv", kcv)
            f.check(p.returncode == 0 and p.stdout.split("\n")[0] == kcv,
                    f"key components {label}: {p.stdout!r} {p.stderr!r}")
        lst = run(a.pmp, "key", "list", "--dir", ks).stdout
        f.check("XOF-MAC usage=M6 algorithm=AES bits=128 mode=C exportability=N kcv=270389F4B0" in lst,
                f"XOF-MAC in the store: {lst!r}")
        f.check("DK-PAN usage=D0 algorithm=AES bits=128 mode=B exportability=N kcv=65E3953E6C" in lst,
                f"DK-PAN in the store: {lst!r}")

        def pmp_verify(content: str, name: str, *extra, store=ks):
            path = os.path.join(tmp, name)
            with open(path, "w", encoding="utf-8", newline="") as out:
                out.write(content)
            return run(a.pmp, "xof", "verify", "--dir", store, *extra, path)

        p = run(a.pmp, "xof", "verify", "--dir", ks, a.file)
        f.check(p.returncode == 0 and p.stdout == "2\n", f"pmp xof verify example: {p.returncode} {p.stdout!r} {p.stderr!r}")
        p = run(a.pmp, "xof", "verify", "--dir", ks, "--mac-key", "XOF-MAC", a.file)
        f.check(p.returncode == 0 and p.stdout == "2\n", f"--mac-key XOF-MAC: {p.returncode} {p.stdout!r} {p.stderr!r}")
        p = run(a.pmp, "xof", "verify", "--dir", ks, "--mac-key", "DK-PAN", a.file)
        f.check(p.returncode == 1 and p.stdout == "", f"--mac-key DK-PAN: {p.returncode} {p.stdout!r} {p.stderr!r}")
        for i, (what, t) in enumerate(same.items()):
            p = pmp_verify(t, f"same-{i}.xof")
            f.check(p.returncode == 0 and p.stdout == "2\n", f"pmp, {what}: {p.returncode} {p.stdout!r} {p.stderr!r}")
        # §1: whitespace inside the hex run is refused (by this script's reader and by pmp).
        wrapped = text.replace("D0A97526B5EEB45E6D353841F47A59B7DBA8A98A",
                               "D0A97526B5EEB45E6D353841F47A59B7\n    DBA8A98A")
        f.check(wrapped != text, "wrapped ciphertext: no change made")
        try:
            verify(wrapped.encode(), mac_key)
            f.check(False, "this script's reader accepts whitespace inside a ciphertext")
        except ValueError:
            f.check(True, "")
        p = pmp_verify(wrapped, "wrapped.xof")
        f.check(p.returncode == 1 and "hex" in p.stderr, f"pmp, wrapped ciphertext: {p.returncode} {p.stderr!r}")
        for i, (what, t) in enumerate(tampers.items()):
            p = pmp_verify(t, f"tamper-{i}.xof")
            f.check(p.returncode == 1 and p.stdout == "" and p.stderr.strip() != "",
                    f"pmp, tamper {what}: {p.returncode} {p.stdout!r} {p.stderr!r}")

        # §2/§6: the TEST marker. A TEST-marked copy with every MAC recomputed here verifies
        # on a TEST store and pmp reports it; the marker added or removed without new MACs
        # breaks the header MAC (it is MACed); a production store refuses the TEST order
        # unless --allow-test.
        marked_plain = text.replace('mac-key="XOF-MAC"', 'mac-key="XOF-MAC" test="true"')
        f.check(marked_plain != text, "test marker: no change made")
        marked = remac(marked_plain, mac_key)
        p_, inf = verify(marked.encode(), mac_key)
        f.check(not p_, f"TEST-marked copy: this script's reader: {p_}")
        f.check(inf["H"] != info["H"], "the test marker does not change H")
        p = pmp_verify(marked, "test-marked.xof")
        f.check(p.returncode == 0 and p.stdout == "2\n" and "TEST order" in p.stderr,
                f"pmp, TEST-marked: {p.returncode} {p.stdout!r} {p.stderr!r}")
        p = pmp_verify(marked_plain, "test-added.xof")
        f.check(p.returncode == 1 and "header MAC" in p.stderr,
                f"pmp, marker added without MACs: {p.returncode} {p.stderr!r}")
        stripped = marked.replace(' test="true"', "")
        p = pmp_verify(stripped, "test-stripped.xof")
        f.check(p.returncode == 1 and "header MAC" in p.stderr,
                f"pmp, marker stripped: {p.returncode} {p.stderr!r}")
        ksp = os.path.join(tmp, "ks-prod")
        lc1, lc2 = "3C" * 32, "A5" * 32
        p = run(a.pmp, "keystore", "init", "--dir", ksp, "--lmk-component", lc1, "--lmk-component", lc2)
        f.check(p.returncode == 0, f"production keystore init: {p.stderr}")
        penv = dict(os.environ, PMP_LMK_COMPONENTS=f"{lc1},{lc2}",
                    PMP_PASSPHRASE_ALICE="alice passphrase", PMP_PASSPHRASE_BOB="bob passphrase")
        # On a production store forming a key from components takes two officers.
        for officer in ("alice", "bob"):
            p = subprocess.run([a.pmp, "keystore", "enrol-officer", "--dir", ksp, "--id", officer],
                               capture_output=True, text=True, env=penv)
            f.check(p.returncode == 0, f"production enrol-officer {officer}: {p.stderr!r}")
        for label, (usage, mode, c1, c2, _, kcv) in KEYS.items():
            p = subprocess.run([a.pmp, "key", "components", "--dir", ksp, "--label", label, "--usage", usage,
                                "--algorithm", "aes", "--mode", mode, "--component", c1, "--component", c2,
                                "--kcv", kcv, "--officer", "alice", "--officer", "bob"],
                               capture_output=True, text=True, env=penv)
            f.check(p.returncode == 0, f"production key components {label}: {p.stderr!r}")
        # §3: on a production store an XOF MAC key must have been generated in the HSM; this
        # one was formed from components stated here, so every order under it is refused,
        # TEST-marked or not, --allow-test or not. (The TEST refusal itself, under a
        # generated key, is tests/xof.rs::test_marker_is_written_maced_and_refused_by_a_production_store.)
        path = os.path.join(tmp, "test-marked.xof")
        for extra, xof in (([], path), (["--allow-test"], path), ([], a.file)):
            p = subprocess.run([a.pmp, "xof", "verify", "--dir", ksp, "--mac-key", "XOF-MAC", *extra, xof],
                               capture_output=True, text=True, env=penv)
            f.check(p.returncode == 1 and p.stdout == "" and "generated in this HSM" in p.stderr,
                    f"production store, formed MAC key {extra} {xof}: {p.returncode} {p.stdout!r} {p.stderr!r}")

        # §3/§6: the same MAC key, but exportable in the store, must be refused.
        try:
            import psec.tr31
        except ImportError:
            psec = None
        f.check(psec is not None, "psec is needed for the exportable MAC key check")
        if psec is not None:
            ks2 = os.path.join(tmp, "ks-exportable")
            run(a.pmp, "keystore", "init", "--dir", ks2, "--test-lmk")
            zc1, zc2 = "11" * 32, "22" * 32
            zmk = xor(bytes.fromhex(zc1), bytes.fromhex(zc2))
            p = run(a.pmp, "key", "components", "--dir", ks2, "--label", "ZMK", "--usage", "K0",
                    "--algorithm", "aes", "--component", zc1, "--component", zc2)
            f.check(p.returncode == 0, f"ZMK components: {p.stderr}")
            hdr_e = psec.tr31.Header("D", "M6", "A", "C", "00", "E")
            block = psec.tr31.wrap(zmk, hdr_e, mac_key)
            p = run(a.pmp, "key", "import", "--dir", ks2, "--label", "XOF-MAC", "--kek", "ZMK", "--block", block)
            f.check(p.returncode == 0 and p.stdout.split("\n")[0] == "270389F4B0",
                    f"import exportable XOF-MAC: {p.stdout!r} {p.stderr!r}")
            p = run(a.pmp, "xof", "verify", "--dir", ks2, a.file)
            f.check(p.returncode == 1 and p.stdout == "" and "exportable" in p.stderr,
                    f"exportable MAC key: {p.returncode} {p.stdout!r} {p.stderr!r}")

    print(f"interop_xof: {os.path.basename(a.file)}, {info['records']} records, "
          f"{len(same)} MAC-neutral edits, {len(tampers)} tampers, {f.checks} checks, {f.n} mismatches")
    sys.exit(1 if f.n else 0)


if __name__ == "__main__":
    main()
