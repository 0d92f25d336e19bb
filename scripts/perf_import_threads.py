#!/usr/bin/env python3
"""CPU time of an import by pipeline thread, from a perf profile with call stacks.

Record the import bench's scaling pass (see docs/benchmarks.md), then feed the samples in:

    PMP_IMPORT_SCALING_ONLY=1 PMP_IMPORT_ROUNDS=3 perf record -F 499 \
        --call-graph dwarf,16384 -o import.data target/release/deps/import-<hash> --bench
    perf script -i import.data -F tid,time,ip,sym | \
        scripts/perf_import_threads.py --cases 2 --freq 499 --records 180000

A sample belongs to the read section (reader), the transform (worker) or the write
section (writer) by the pipeline function on its stack (`read_batch` or `open_source`,
`process_batch`, `write_batch`: every import thread runs all three); samples
outside an import (key set-up, making the demo file) are left out. The bench runs its cases
one after the other with set-up work between them: `--cases N` splits the samples at the
N - 1 longest pauses between import samples. With `--freq` (the sampling rate given to
perf) and `--records` (records imported per case, all rounds and configurations), the
shares are also given as CPU microseconds per record.
"""

import argparse
import collections
import re
import sys

ROLES = (
    ("reader", ("read_batch", "open_source")),
    ("worker", ("process_batch",)),
    ("writer", ("write_batch",)),
)


def read_samples(lines):
    """(time, stack) per sample of `perf script -F tid,time,ip,sym`."""
    samples = []
    cur = None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if cur is not None:
                samples.append(cur)
            cur = None
            continue
        # A sample's first line is `  TID TIME:` (the tid right-aligned), its frames
        # start with a tab.
        if not line.startswith("\t"):
            m = re.match(r"\s*(\d+)\s+([\d.]+):", line)
            cur = (float(m.group(2)), []) if m else None
        elif cur is not None:
            parts = line.split(None, 1)
            if len(parts) == 2:
                cur[1].append(parts[1])
    if cur is not None:
        samples.append(cur)
    return samples


def role(stack):
    text = " ".join(stack)
    for name, marks in ROLES:
        if any(m in text for m in marks):
            return name
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=1)
    ap.add_argument("--freq", type=float)
    ap.add_argument("--records", type=float)
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    samples = [(t, st, role(st)) for t, st in read_samples(sys.stdin)]
    samples = sorted(s for s in samples if s[2] is not None)
    if not samples:
        sys.exit("no import samples (perf script needs the call stacks: record with --call-graph dwarf)")
    gaps = sorted(
        ((samples[i + 1][0] - samples[i][0], samples[i][0]) for i in range(len(samples) - 1)),
        reverse=True,
    )
    cuts = sorted(t for _, t in gaps[: args.cases - 1])
    for case in range(args.cases):
        lo = cuts[case - 1] if case > 0 else float("-inf")
        hi = cuts[case] if case < len(cuts) else float("inf")
        part = [s for s in samples if lo < s[0] <= hi]
        count = collections.Counter(r for _, _, r in part)
        total = sum(count.values())
        print(f"case {case + 1}: {total} samples")
        for name, _ in ROLES:
            n = count[name]
            line = f"  {name:<7} {n:6d} samples {100 * n / max(total, 1):5.1f} %"
            if args.freq and args.records:
                line += f"  {n / args.freq / args.records * 1e6:6.2f} us/record"
            print(line)
            leaves = collections.Counter(
                re.sub(r"\+0x[0-9a-f]+.*", "", st[0])[:80] for _, st, r in part if r == name and st
            )
            for sym, k in leaves.most_common(args.top):
                print(f"            {k:6d} {sym}")


if __name__ == "__main__":
    main()
