#!/usr/bin/env python3
"""Known answers for EMV ICC public-key certificates and SDA signed static data, built
independently of src/ from the text of docs/profile.md ("Offline data authentication":
EMV Book 2 §6.4 Table 14 and §5.4 Table 7) with python ints and hashlib.

The RSA keys are fixed: tests/data/icc_kat_keys.txt (primes made once with
pyca/cryptography's rsa.generate_private_key; `--new-keys` makes a fresh set). The
signature is the raw RSA private operation m^d mod n with d = e^-1 mod lcm(p-1, q-1),
checked here by recovering it with m = s^e mod n.

Writes tests/data/icc_cert_kat.txt (read by tests/prep_icc.rs, which builds the same
certificates through pmp_core::prep::icc and signs them with pmp_core::rsa).

Usage: scripts/icc_cert_kat.py [--new-keys]
"""

import hashlib
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")
KEYS = os.path.join(DATA, "icc_kat_keys.txt")
OUT = os.path.join(DATA, "icc_cert_kat.txt")

KEY_SPECS = [("ISS-1024", 1024, 3), ("ISS-1408", 1408, 3), ("ICC-1024", 1024, 3),
             ("ICC-1152", 1152, 65537)]


def new_keys():
    from cryptography.hazmat.primitives.asymmetric import rsa
    lines = ["# Fixed RSA keys of the ICC certificate known answers (scripts/icc_cert_kat.py).",
             "# Made once with pyca/cryptography 48 rsa.generate_private_key; test keys only.", ""]
    for name, bits, e in KEY_SPECS:
        k = rsa.generate_private_key(public_exponent=e, key_size=bits)
        nums = k.private_numbers()
        lines += [f"Key = {name}", f"E = {e}", f"P = {nums.p:X}", f"Q = {nums.q:X}", ""]
    open(KEYS, "w").write("\n".join(lines))


def load_keys():
    keys, cur = {}, None
    for line in open(KEYS):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        k, v = (x.strip() for x in line.split("=", 1))
        if k == "Key":
            cur = keys.setdefault(v, {})
        else:
            cur[k] = int(v, 16) if k in ("P", "Q") else int(v)
    out = {}
    for name, k in keys.items():
        n = k["P"] * k["Q"]
        lam = (k["P"] - 1) * (k["Q"] - 1) // math.gcd(k["P"] - 1, k["Q"] - 1)
        out[name] = dict(n=n, e=k["E"], d=pow(k["E"], -1, lam), nlen=(n.bit_length() + 7) // 8)
    return out


def i2b(x, n):
    return x.to_bytes(n, "big")


def exp_bytes(e):
    return b"\x03" if e == 3 else b"\x01\x00\x01"


def pan_field(pan):
    # docs/profile.md: the PAN's digits, two per byte, padded on the right with F to 10 bytes.
    return bytes.fromhex(pan + "F" * (20 - len(pan)))


def sign(key, m):
    assert m[0] == 0x6A and m[-1] == 0xBC and len(m) == key["nlen"]
    s = pow(int.from_bytes(m, "big"), key["d"], key["n"])
    assert pow(s, key["e"], key["n"]) == int.from_bytes(m, "big")
    return i2b(s, key["nlen"])


def icc_cert(issuer, icc, pan, yymm, serial, static):
    # docs/profile.md, "ICC public-key certificate" (Table 14).
    ni, nicc = issuer["nlen"], icc["nlen"]
    mod = i2b(icc["n"], nicc)
    e = exp_bytes(icc["e"])
    room = ni - 42
    part, rem = mod[:room], mod[room:]
    fields = (b"\x04" + pan_field(pan) + bytes.fromhex(yymm[2:] + yymm[:2]) + serial
              + bytes([1, 1, nicc, len(e)]) + part + b"\xBB" * (room - len(part)))
    h = hashlib.sha1(fields + rem + e + static).digest()
    m = b"\x6A" + fields + h + b"\xBC"
    return m, sign(issuer, m), rem


def ssad(issuer, dac, static):
    # docs/profile.md, "Signed static application data" (Table 7).
    ni = issuer["nlen"]
    fields = b"\x03\x01" + dac + b"\xBB" * (ni - 26)
    m = b"\x6A" + fields + hashlib.sha1(fields + static).digest() + b"\xBC"
    return m, sign(issuer, m)


def record(*objs):
    body = b"".join(objs)
    return bytes([0x70, len(body)]) + body


def tlv(tag, v):
    return bytes.fromhex(tag) + bytes([len(v)]) + v


def main():
    if "--new-keys" in sys.argv:
        new_keys()
    keys = load_keys()
    # Static data: record SFI 1 rec 1 (value only), SFI 2 rec 1 (value only), SFI 11 rec 1
    # (whole record), then the AIP 5C00 (9F4A lists 82): docs/profile.md, "The static data
    # to be authenticated".
    r1 = record(tlv("5A", bytes.fromhex("4761739001010119")), tlv("5F24", bytes.fromhex("271231")))
    r2 = record(tlv("9F08", bytes.fromhex("0096")), tlv("9F4A", b"\x82"))
    r11 = record(tlv("9F42", bytes.fromhex("0978")))
    static = r1[2:] + r2[2:] + r11 + bytes.fromhex("5C00")
    cases = [
        ("issuer 1024 / ICC 1024, remainder 42 bytes", "ISS-1024", "ICC-1024", "4761739001010119", "2712", "000001"),
        ("issuer 1408 / ICC 1024, no remainder, BB pad", "ISS-1408", "ICC-1024", "4111111111111111", "3001", "ABCDEF"),
        ("issuer 1408 / ICC 1152 e=65537, remainder 10 bytes, 19-digit PAN", "ISS-1408", "ICC-1152",
         "6799998900000000019", "2802", "7FFFFF"),
    ]
    out = [
        "# EMV ICC public-key certificates (Book 2 §6.4, Table 14) and SDA signed static",
        "# application data (Book 2 §5.4, Table 7): known answers.",
        "#",
        "# Source: scripts/icc_cert_kat.py, an independent construction in Python (python ints,",
        "# hashlib SHA-1) written from docs/profile.md, with the fixed keys of",
        "# tests/data/icc_kat_keys.txt (primes from pyca/cryptography 48). Each Certificate is",
        "# Message^d mod n under the issuer key, checked by recovery in the script.",
        "# StaticData = record 0101's value || record 0201's value || record 0B01 whole || AIP,",
        "# Record0101/Record0201/Record0B01/Aip give the pieces.",
        "",
        f"Record0101 = {r1.hex().upper()}",
        f"Record0201 = {r2.hex().upper()}",
        f"Record0B01 = {r11.hex().upper()}",
        "Aip = 5C00",
        f"StaticData = {static.hex().upper()}",
        "",
    ]
    for what, iss, icc, pan, yymm, serial in cases:
        m, cert, rem = icc_cert(keys[iss], keys[icc], pan, yymm, bytes.fromhex(serial), static)
        out += [f"# {what}", "Kind = icc-certificate", f"Issuer = {iss}", f"Icc = {icc}", f"Pan = {pan}",
                f"Expiry = {yymm}", f"Serial = {serial}", f"Message = {m.hex().upper()}",
                f"Remainder = {rem.hex().upper()}", f"Certificate = {cert.hex().upper()}", ""]
    m, s = ssad(keys["ISS-1024"], bytes.fromhex("DAC0"), static)
    out += ["# SDA signed static application data, issuer 1024", "Kind = signed-static-data",
            "Issuer = ISS-1024", "Dac = DAC0", f"Message = {m.hex().upper()}", f"Signed = {s.hex().upper()}", ""]
    open(OUT, "w").write("\n".join(out))
    print(f"wrote {OUT}: {len(cases)} certificates, 1 signed static data")


if __name__ == "__main__":
    main()
