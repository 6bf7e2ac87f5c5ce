#!/usr/bin/env python3
"""Where a frame's aarch64 instructions go, per function: the report of scripts/insn-profile.

    python3 tools/insn_profile.py ONE.log MANY.log K BINARY [--top N] [--json FILE]

ONE.log and MANY.log are what tools/qemu-plugins/symbols.c wrote for the same lookout command
at 1 and at 1+K frames ("<instructions>\\t<symbol>" lines, then "total\\t<instructions>");
per frame = (MANY - ONE) / K for every function, so start-up cancels out as in
scripts/insn-count. BINARY is the unstripped aarch64 lookout they ran: blocks the plugin could
not name ("? 0x<address>": assembly routines such as tract's matrix kernels have no symbol
size, which qemu needs) are given the nearest function symbol at or below their address in
BINARY's table (aarch64-linux-gnu-nm -n; local labels such as ".packed_packed_loop_4" are
skipped, so a kernel's inner loops count as the kernel). Addresses outside the program are
shared libraries (libc, libm, the loader).

Prints the functions taking the most instructions per frame (demangled with c++filt), then
the same instructions by where the code comes from (GROUPS): tract's assembly kernels,
tract's Rust operators, ndarray's generic loops, lookout, the rest. --json writes every
function. Python's standard library, aarch64-linux-gnu-nm and c++filt (binutils).
"""
import argparse
import bisect
import json
import re
import subprocess
import sys

# qemu-user 7.2 loads an aarch64 position-independent program at this address.
LOAD_BASE = 0x5500000000
OUTSIDE = "(shared libraries: libc, libm, the loader)"

# (group, test on the demangled name), first match wins.
GROUPS = [
    ("tract matrix kernels (assembly)", lambda n: n.startswith(("arm64simd_", "arm64fp16_", "apple_amx_"))),
    ("tract im2col and packing", lambda n: "im2col" in n or "::pack" in n or "Packed" in n),
    ("tract quantized-convolution sums (QSumB)", lambda n: "q_sum_b" in n),
    ("tract matrix-product driver", lambda n: "tract_linalg::frame::mmm" in n or "tract_linalg::multithread" in n),
    ("tract other operators", lambda n: n.startswith(("tract_", "<tract_"))),
    ("ndarray generic element loops", lambda n: "ndarray::" in n),
    ("closures (element-wise maps)", lambda n: n.startswith("core::ops::function::FnOnce")),
    ("half-precision conversions (half)", lambda n: n.startswith(("half::", "<half::"))),
    ("lookout", lambda n: n.startswith(("lookout::", "<lookout::"))),
    ("shared libraries", lambda n: n == OUTSIDE),
]


def function_symbols(binary):
    out = subprocess.run(["aarch64-linux-gnu-nm", "-n", binary], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"insn_profile.py: aarch64-linux-gnu-nm {binary} failed: {out.stderr.strip()}")
    syms = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW" and not parts[2].startswith((".", "$")):
            syms.append((int(parts[0], 16), parts[2]))
    if not syms:
        sys.exit(f"insn_profile.py: {binary} has no function symbols (it is stripped: "
                 "scripts/insn-profile builds one that is not)")
    return syms


def read_counts(path, resolve):
    counts, total = {}, None
    with open(path) as f:
        for line in f:
            value, _, name = line.rstrip("\n").partition("\t")
            if value == "total":
                total = int(name)
                continue
            try:
                n = int(value)
            except ValueError:
                continue  # qemu's own log lines
            name = resolve(name)
            counts[name] = counts.get(name, 0) + n
    if total is None:
        sys.exit(f"insn_profile.py: {path} has no 'total' line (did the plugin run to the end?)")
    return counts, total


def demangle(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
    lines = out.stdout.split("\n")
    # Rust's legacy mangling ends in a hash ("::h06f4695422535395"): noise in a table.
    return {n: re.sub(r"::h[0-9a-f]{16}$", "",
                      lines[i] if out.returncode == 0 and i < len(lines) and lines[i] else n)
            for i, n in enumerate(names)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("one")
    ap.add_argument("many")
    ap.add_argument("frames", type=int)
    ap.add_argument("binary")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.frames < 1:
        sys.exit("insn_profile.py: K must be 1 or more")

    syms = function_symbols(args.binary)
    addrs = [a for a, _ in syms]
    end = syms[-1][0] + 0x100000

    def resolve(name):
        if not name.startswith("? 0x"):
            return name
        addr = int(name[4:], 16) - LOAD_BASE
        if 0 <= addr < end:
            i = bisect.bisect_right(addrs, addr) - 1
            if i >= 0:
                return syms[i][1]
        return OUTSIDE

    one, one_total = read_counts(args.one, resolve)
    many, many_total = read_counts(args.many, resolve)
    per = {n: (many.get(n, 0) - one.get(n, 0)) / args.frames for n in set(one) | set(many)}
    total = (many_total - one_total) / args.frames
    if total <= 0:
        sys.exit(f"insn_profile.py: {args.many} counts no more instructions than {args.one}: "
                 "were they made by the same command at 1 and at 1+K frames?")
    names = demangle(list(per))
    rows = sorted(((names[n], v) for n, v in per.items()), key=lambda r: -r[1])

    print(f"{total / 1e6:.2f} M instructions per frame ((1+{args.frames} frames - 1 frame) / {args.frames})")
    print()
    print("| M per frame | share | function |")
    print("|---:|---:|---|")
    for name, v in rows[:args.top]:
        short = name if len(name) <= 110 else name[:107] + "..."
        print(f"| {v / 1e6:.3f} | {100 * v / total:.1f} % | `{short}` |")
    groups = {}
    for name, v in rows:
        g = next((g for g, test in GROUPS if test(name)), "other")
        groups[g] = groups.get(g, 0) + v
    print()
    print("| M per frame | share | where the code comes from |")
    print("|---:|---:|---|")
    for g, v in sorted(groups.items(), key=lambda x: -x[1]):
        if abs(v) >= 0.0005 * total:
            print(f"| {v / 1e6:.3f} | {100 * v / total:.1f} % | {g} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"frames": args.frames, "insns_per_frame": total,
                       "groups": groups,
                       "functions": [{"function": n, "insns_per_frame": v} for n, v in rows if v]},
                      f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
