#!/usr/bin/env python3
"""Interoperability check of the software HSM's key distribution (`pmp keystore` / `pmp key`)
against psec 1.3.0 (an independent TR-31 implementation) and pyca/cryptography (KCVs).

For random ZMKs formed from 2 or 3 known components (2-key TDES, 3-key TDES, AES-128/192/256):
  1. `pmp key components` prints the KCV computed independently for the XOR of the components;
     a wrong `--kcv` is refused and nothing is stored;
  2. transport keys (K0 / P0 / M6, exportable) generated in the store and exported with
     `pmp key export` unwrap in psec under the known ZMK, with the usage, algorithm and
     exportability of the key and the KCV `pmp key generate` printed;
  3. a key block made by psec under the ZMK is imported with `pmp key import` and reports
     the KCV of the key psec wrapped;
  4. a non-exportable key, a weaker KEK and a tampered block are refused (exit 1);
  5. `pmp audit verify` passes, and fails (exit 1, naming the line) after an edit.

Usage: scripts/interop_keystore.py [PMP_BINARY] [--rounds N] [--seed S]
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")

import psec.tr31  # noqa: E402
from cryptography.hazmat.primitives.cmac import CMAC  # noqa: E402
from cryptography.hazmat.primitives.ciphers import algorithms, Cipher, modes  # noqa: E402

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # older cryptography
    TripleDES = algorithms.TripleDES


def odd_parity(b: bytes) -> bytes:
    return bytes((x & 0xFE) | (1 - bin(x & 0xFE).count("1") % 2) for x in b)


def kcv(alg: str, key: bytes) -> str:
    if alg == "tdes":
        k = key if len(key) == 24 else key + key[:8]
        e = Cipher(TripleDES(k), modes.ECB()).encryptor()
        return (e.update(b"\0" * 8) + e.finalize())[:3].hex().upper()
    c = CMAC(algorithms.AES(key))
    c.update(b"\0" * 16)
    return c.finalize()[:5].hex().upper()


def weak(key: bytes) -> bool:
    parts = [key[i:i + 8] for i in range(0, len(key), 8)]
    return parts[0] == parts[1] or (len(parts) == 3 and parts[1] == parts[2])


class Failures:
    def __init__(self):
        self.n = 0
        self.checks = 0

    def check(self, ok: bool, what: str):
        self.checks += 1
        if not ok:
            self.n += 1
            print("MISMATCH:", what, file=sys.stderr)


def run(pmp, *args):
    return subprocess.run([pmp, *args], capture_output=True, text=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pmp", nargs="?", default=os.environ.get("PMP_BIN", "target/debug/pmp"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    f = Failures()
    zmk_kinds = [("tdes", 16), ("tdes", 24), ("aes", 16), ("aes", 24), ("aes", 32)]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for alg, n in zmk_kinds:
                d = os.path.join(tmp, f"ks-{r}-{alg}{n}")
                p = run(a.pmp, "keystore", "init", "--dir", d, "--test-lmk")
                f.check(p.returncode == 0, f"keystore init: {p.stderr}")
                while True:
                    comps = [bytes(rng.getrandbits(8) for _ in range(n)) for _ in range(rng.choice([2, 3]))]
                    zmk = bytes(n)
                    for c in comps:
                        zmk = bytes(x ^ y for x, y in zip(zmk, c))
                    if alg == "tdes":
                        zmk = odd_parity(zmk)
                        if weak(zmk):
                            continue
                    break
                args = ["key", "components", "--dir", d, "--label", "ZMK", "--usage", "K0",
                        "--algorithm", alg]
                for c in comps:
                    args += ["--component", c.hex().upper()]
                bad = run(a.pmp, *args, "--kcv", "000000")
                f.check(bad.returncode == 1 and "KCV" in bad.stderr, f"wrong --kcv refused: {bad.stderr}")
                p = run(a.pmp, *args, "--kcv", kcv(alg, zmk))
                f.check(p.returncode == 0 and p.stdout.split("\n")[0] == kcv(alg, zmk),
                        f"{alg}{n} ZMK KCV: {p.stdout!r} {p.stderr!r} want {kcv(alg, zmk)}")
                # Transport keys no stronger than the ZMK.
                tk_alg, bits = (alg, n * 8)
                for label, usage in (("KTK", "K0"), ("PTK", "P0"), ("MTK", "M6")):
                    p = run(a.pmp, "key", "generate", "--dir", d, "--label", label, "--usage", usage,
                            "--algorithm", tk_alg, "--bits", str(bits), "--exportable")
                    f.check(p.returncode == 0, f"generate {label}: {p.stderr}")
                    key_kcv = p.stdout.split("\n")[0]
                    p = run(a.pmp, "key", "export", "--dir", d, "--label", label, "--kek", "ZMK")
                    f.check(p.returncode == 0, f"export {label}: {p.stderr}")
                    block = p.stdout.split("\n")[0]
                    try:
                        h, k = psec.tr31.unwrap(zmk, block)
                        f.check(h.key_usage == usage, f"{label} usage {h.key_usage} != {usage}")
                        f.check(h.algorithm == ("T" if tk_alg == "tdes" else "A"), f"{label} algorithm")
                        f.check(h.exportability == "E", f"{label} exportability")
                        f.check(h.version_id == ("D" if alg == "aes" else "B"), f"{label} version")
                        f.check(kcv(tk_alg, k) == key_kcv, f"{label} KCV {kcv(tk_alg, k)} != {key_kcv}")
                    except Exception as e:  # noqa: BLE001
                        f.check(False, f"psec cannot unwrap the exported {label}: {e}")
                # psec wraps a key under the ZMK; pmp imports it.
                key = bytes(rng.getrandbits(8) for _ in range(16))
                key_alg = "tdes" if alg == "tdes" else "aes"
                if key_alg == "tdes":
                    key = odd_parity(key)
                hdr = psec.tr31.Header("D" if alg == "aes" else "B", "D0", "T" if key_alg == "tdes" else "A", "B", "00", "N")
                block = psec.tr31.wrap(zmk, hdr, key)
                p = run(a.pmp, "key", "import", "--dir", d, "--label", "TK-IN", "--kek", "ZMK", "--block", block)
                if key_alg == "tdes" and weak(key):
                    f.check(p.returncode == 1, "weak TDES key refused on import")
                else:
                    f.check(p.returncode == 0 and p.stdout.split("\n")[0] == kcv(key_alg, key),
                            f"import psec block: {p.stdout!r} {p.stderr!r}")
                # Refusals.
                p = run(a.pmp, "key", "generate", "--dir", d, "--label", "DK", "--usage", "D0",
                        "--algorithm", "aes", "--bits", "128")
                p = run(a.pmp, "key", "export", "--dir", d, "--label", "DK", "--kek", "ZMK")
                f.check(p.returncode == 1 and "not exportable" in p.stderr, f"non-exportable: {p.stderr}")
                t = list(block)
                i = rng.randrange(16, len(t))
                t[i] = "0" if t[i] != "0" else "1"
                p = run(a.pmp, "key", "import", "--dir", d, "--label", "TK-BAD", "--kek", "ZMK", "--block", "".join(t))
                f.check(p.returncode == 1 and p.stdout == "", f"tampered block refused: {p.stdout!r}")
                lst = run(a.pmp, "key", "list", "--dir", d).stdout
                f.check("TK-BAD" not in lst and lst.startswith("DK ") , f"list: {lst!r}")
                # Audit.
                p = run(a.pmp, "audit", "verify", "--dir", d)
                f.check(p.returncode == 0, f"audit verify: {p.stderr}")
                log = os.path.join(d, "audit.log")
                lines = open(log).read().splitlines()
                j = rng.randrange(len(lines))
                lines[j] = lines[j].replace("outcome=", "outcome=x", 1) if "outcome=" in lines[j] else lines[j] + "x"
                open(log, "w").write("\n".join(lines) + "\n")
                p = run(a.pmp, "audit", "verify", "--dir", d)
                f.check(p.returncode == 1 and f"line {j + 1}" in p.stderr, f"audit tamper line {j + 1}: {p.stderr}")
    print(f"interop_keystore: seed {seed}, {a.rounds} rounds x {len(zmk_kinds)} ZMK kinds, "
          f"{f.checks} checks, {f.n} mismatches")
    sys.exit(1 if f.n else 0)


if __name__ == "__main__":
    main()
