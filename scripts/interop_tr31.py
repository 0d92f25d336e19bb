#!/usr/bin/env python3
"""Interoperability check of `pmp keyblock` against psec 1.3.0 (an independent TR-31 /
ANSI X9.143 implementation).

For versions A, B, C and D, with 2-key and 3-key TDES keys (and AES-128/192/256 keys in
version D), random KBPKs, keys and headers (usage with a matching mode of use, key version,
exportability, optional blocks KS / TS / an unknown ID, masked length or not):

  1. pmp wrap  -> psec unwrap: same key, same header fields and optional blocks;
  2. psec wrap -> pmp unwrap:  same key, same header fields and optional blocks;
  3. tamper: a block from pmp with one character changed (header, encrypted key, MAC) and
     a wrong KBPK are refused by pmp (exit status 1, nothing on stdout) and by psec.

Usage: scripts/interop_tr31.py [PMP_BINARY] [--cases N] [--seed S]
The binary defaults to $PMP_BIN, then target/debug/pmp. Exits non-zero on any mismatch.
Optional blocks stay under 252 characters: psec 1.3.0 reads the X9.143 extended length
encoding differently (length of length in bytes, not characters), see the keyblock note.
"""

import argparse
import os
import random
import subprocess
import sys
import warnings

warnings.filterwarnings("ignore")  # psec's TripleDES deprecation warnings

import psec.tr31  # noqa: E402

# (usage, modes) pairs valid for symmetric keys under X9.143 table 6.
USAGES = [
    ("B0", "XN"), ("B1", "XN"), ("B2", "XYN"), ("C0", "CGVN"), ("D0", "BDEN"),
    ("D2", "BDEN"), ("E0", "XN"), ("E1", "XN"), ("E2", "XN"), ("E3", "XN"), ("E4", "XN"),
    ("E5", "XN"), ("E6", "XN"), ("I0", "N"), ("K0", "BDEN"), ("K1", "BDEN"),
    ("M0", "CGVN"), ("M1", "CGVN"), ("M3", "CGVN"), ("M6", "CGVN"), ("M8", "CGVN"),
    ("P0", "BDEN"), ("V0", "CGVN"), ("V1", "CGVN"), ("V2", "CGVN"),
]
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))

# (version, KBPK algorithm, KBPK length, key algorithm, key length)
COMBOS = [
    ("A", "T", 16, "T", 16), ("A", "T", 24, "T", 16), ("A", "T", 24, "T", 24),
    ("B", "T", 16, "T", 16), ("B", "T", 24, "T", 16), ("B", "T", 24, "T", 24),
    ("C", "T", 16, "T", 16), ("C", "T", 24, "T", 16), ("C", "T", 24, "T", 24),
    ("D", "A", 16, "T", 16), ("D", "A", 16, "T", 24), ("D", "A", 16, "A", 16),
    ("D", "A", 24, "A", 24), ("D", "A", 32, "A", 16), ("D", "A", 32, "A", 24),
    ("D", "A", 32, "A", 32), ("D", "A", 32, "T", 24),
]


def odd_parity(b: bytes) -> bytes:
    return bytes((x & 0xFE) | (1 - bin(x & 0xFE).count("1") % 2) for x in b)


def rand_key(rng: random.Random, alg: str, n: int) -> bytes:
    k = bytes(rng.getrandbits(8) for _ in range(n))
    return odd_parity(k) if alg == "T" else k


def rand_header(rng: random.Random, version: str, alg: str) -> tuple:
    usage, modes = rng.choice(USAGES)
    mode = rng.choice(modes)
    kv = rng.choice(["00", "".join(rng.choice(ALNUM) for _ in range(2))])
    exp = rng.choice("ENS")
    blocks = {}
    if rng.random() < 0.5:
        blocks["KS"] = "".join(rng.choice("0123456789ABCDEF") for _ in range(rng.choice([16, 20, 24])))
    if rng.random() < 0.3:
        blocks["TS"] = "2024%02d%02d%02d%02d%02dZ" % (
            rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59),
            rng.randint(0, 59))
    if rng.random() < 0.3:
        blocks["Z" + rng.choice(ALNUM)] = "".join(rng.choice(PRINTABLE) for _ in range(rng.randint(0, 120)))
    text = f"{version}0000{usage}{alg}{mode}{kv}{exp}{len(blocks):02d}00"
    text += "".join(f"{i}{len(d) + 4:02X}{d}" for i, d in blocks.items())
    fields = {"version": version, "key_usage": usage, "algorithm": alg, "mode_of_use": mode,
              "key_version": kv, "exportability": exp}
    return text, fields, blocks


class Pmp:
    def __init__(self, binary: str):
        self.binary = binary

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, "keyblock", *args], capture_output=True, text=True)

    def wrap(self, kbpk: bytes, header: str, key: bytes, masked) -> str:
        args = ["wrap", "--kbpk", kbpk.hex().upper(), "--header", header, "--key", key.hex().upper()]
        if masked is not None:
            args += ["--masked-length", str(masked)]
        r = self.run(*args)
        if r.returncode != 0:
            raise RuntimeError(f"pmp wrap failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout.splitlines()[0]

    def unwrap(self, kbpk: bytes, block: str) -> tuple:
        r = self.run("unwrap", "--kbpk", kbpk.hex().upper(), "--block", block)
        return r.returncode, r.stdout, r.stderr


def parse_fields(lines: list) -> tuple:
    fields, blocks = {}, {}
    for line in lines:
        name, _, value = line.partition(": ")
        if name.startswith("optional_block "):
            blocks[name.split(" ", 1)[1]] = value
        else:
            fields[name] = value
    return fields, blocks


def psec_fields(h) -> tuple:
    fields = {"version": h.version_id, "key_usage": h.key_usage, "algorithm": h.algorithm,
              "mode_of_use": h.mode_of_use, "key_version": h.version_num,
              "exportability": h.exportability}
    return fields, dict(h.blocks)


def tamper_positions(rng: random.Random, block: str, hlen: int) -> list:
    picks = [rng.randrange(0, hlen), rng.randrange(hlen, len(block) - 8), rng.randrange(len(block) - 8, len(block))]
    return [(i, "header" if i < hlen else "encrypted key" if i < len(block) - 8 else "MAC") for i in picks]


def changed_char(rng: random.Random, c: str) -> str:
    pool = "0123456789ABCDEF" if c in "0123456789ABCDEF" else ALNUM
    return rng.choice([x for x in pool if x != c])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary", nargs="?", default=os.environ.get("PMP_BIN", "target/debug/pmp"))
    ap.add_argument("--cases", type=int, default=25, help="random cases per combination and direction")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    pmp = Pmp(args.binary)
    failures = []
    counts = {"pmp->psec": 0, "psec->pmp": 0, "tamper": 0, "wrong kbpk": 0}
    per_version = {v: 0 for v in "ABCD"}

    def fail(msg: str) -> None:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)

    for version, kalg, klen, alg, keylen in COMBOS:
        for _ in range(args.cases):
            kbpk = rand_key(rng, kalg, klen)
            key = rand_key(rng, alg, keylen)
            header, fields, blocks = rand_header(rng, version, alg)
            masked = rng.choice([None, None, keylen, 24 if alg == "T" else 32])
            ctx = f"v{version} kbpk {kalg}{klen * 8} key {alg}{keylen * 8} header {header} (seed {seed})"

            # 1. pmp wrap -> psec unwrap
            try:
                block = pmp.wrap(kbpk, header, key, masked)
                h, k = psec.tr31.unwrap(kbpk, block)
                if k != key:
                    fail(f"pmp->psec key mismatch: {ctx}")
                elif psec_fields(h) != (fields, blocks):
                    fail(f"pmp->psec header mismatch: {ctx}: {psec_fields(h)}")
                else:
                    counts["pmp->psec"] += 1
                    per_version[version] += 1
            except Exception as e:  # noqa: BLE001
                fail(f"pmp->psec: {ctx}: {e}")
                continue

            # 3. tamper (on the pmp-made block) and wrong KBPK
            hlen = len(str(psec.tr31.unwrap(kbpk, block)[0]))
            for i, what in tamper_positions(rng, block, hlen):
                t = block[:i] + changed_char(rng, block[i]) + block[i + 1:]
                rc, out, _ = pmp.unwrap(kbpk, t)
                if rc != 1 or out.strip():
                    fail(f"tampered {what} at {i} not refused by pmp (rc {rc}): {ctx}")
                    continue
                try:
                    psec.tr31.unwrap(kbpk, t)
                    fail(f"tampered {what} at {i} accepted by psec: {ctx}")
                except Exception:  # noqa: BLE001
                    counts["tamper"] += 1
            wrong = bytearray(kbpk)
            wrong[rng.randrange(len(wrong))] ^= 1 << rng.randrange(1, 8)  # not a parity bit
            rc, out, err = pmp.unwrap(bytes(wrong), block)
            if rc != 1 or out.strip() or "cryptographic verification failed" not in err:
                fail(f"wrong KBPK not refused as a crypto failure (rc {rc}, {err.strip()}): {ctx}")
            else:
                counts["wrong kbpk"] += 1

            # 2. psec wrap -> pmp unwrap (fresh random values)
            kbpk = rand_key(rng, kalg, klen)
            key = rand_key(rng, alg, keylen)
            header, fields, blocks = rand_header(rng, version, alg)
            ctx = f"v{version} kbpk {kalg}{klen * 8} key {alg}{keylen * 8} header {header} (seed {seed})"
            try:
                block = psec.tr31.wrap(kbpk, header, key, masked)
            except Exception as e:  # noqa: BLE001
                fail(f"psec wrap failed: {ctx}: {e}")
                continue
            rc, out, err = pmp.unwrap(kbpk, block)
            lines = out.splitlines()
            if rc != 0 or not lines:
                fail(f"psec->pmp unwrap failed (rc {rc}: {err.strip()}): {ctx}")
                continue
            got_fields, got_blocks = parse_fields(lines[1:])
            got_blocks.pop("PB", None)
            got = {k: got_fields.get(k) for k in fields}
            if lines[0] != key.hex().upper():
                fail(f"psec->pmp key mismatch: {ctx}")
            elif (got, got_blocks) != (fields, blocks):
                fail(f"psec->pmp header mismatch: {ctx}: {got} {got_blocks}")
            else:
                counts["psec->pmp"] += 1
                per_version[version] += 1

    total = sum(counts.values())
    print(f"interop_tr31: psec {getattr(psec, '__version__', '?')}, binary {args.binary}, seed {seed}")
    print(f"  combinations: {len(COMBOS)} (versions A, B, C, D; TDES-128/192 and AES-128/192/256 keys)")
    for k, v in counts.items():
        print(f"  {k:>11}: {v} passed")
    print("  per version (both directions): " + ", ".join(f"{v}={n}" for v, n in per_version.items()))
    if failures:
        print(f"FAILED: {len(failures)} mismatch(es) out of {total + len(failures)} checks")
        return 1
    print(f"OK: {total} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
