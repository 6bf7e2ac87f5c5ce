#!/usr/bin/env python3
"""The Markdown table of instructions per frame that scripts/insn-count measured, from one or
more of its JSON files, for the README to quote:

    python3 tools/insn_table.py .cache/insn-count/*.json
    python3 tools/insn_table.py --ratio --no-notes run-a72.json run-a76.json

One row per model, and per CPU (a72, a76, a76-nodot, in that order, then any other) two
columns: millions of instructions per frame of inference alone (`lookout bench --bare-only`)
and end to end (`lookout run`: decoding the image, pre-processing, inference, the decoder).
--ratio adds end to end / inference per CPU. Under the table, unless --no-notes, a line per
distinct set-up the rows were measured with (lookout revision, qemu, frames, plugin, view).

Rows of other engines (scripts/insn-count --engine ort,ncnn,python: a row's "engine"; a row
without one is lookout's) put the engines side by side, per CPU: lookout infer, onnxruntime infer
(tools/ort_frames.py), ncnn infer (tools/ncnn_frames.py), lookout e2e, Python e2e
(tools/python_pipeline.py), the columns no row fills left out. --ratio then adds each stack's
end to end / inference (lookout's; Python e2e / onnxruntime infer), --versus onnxruntime /
lookout and ncnn / lookout (infer) and Python / lookout (e2e).

A JSON file holds a list of row objects (what scripts/insn-count writes); an object with a
"rows" list, or a single row object, is read too. When two files measure the same model on
the same CPU with the same engine, the later file on the command line wins (a note on stderr
says so). Python's standard library only.
"""
import argparse
import json
import os
import sys

CPU_ORDER = ["a72", "a76", "a76-nodot"]
CPU_TITLE = {
    "a72": "A72 (Pi 4)",
    "a76": "A76 (Pi 5)",
    "a76-nodot": "A76, no SDOT",
}
REQUIRED = ("model", "cpu", "e2e_insns_per_frame", "infer_insns_per_frame")
# The engines' columns, in order: (engine, what, title).
COLUMNS = [
    ("lookout", "infer", "lookout infer"),
    ("ort", "infer", "onnxruntime infer"),
    ("ncnn", "infer", "ncnn infer"),
    ("lookout", "e2e", "lookout e2e"),
    ("python", "e2e", "Python e2e"),
]


def fail(message):
    print(f"insn_table.py: {message}", file=sys.stderr)
    sys.exit(1)


def read_rows(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")
    except json.JSONDecodeError as e:
        fail(f"{path} is not JSON: {e}")
    if isinstance(data, dict):
        data = data.get("rows", [data])
    if not isinstance(data, list):
        fail(f"{path}: expected a list of rows, found {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            fail(f"{path}: row {i} is not an object")
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            fail(f"{path}: row {i} has no {', '.join(missing)}")
    return data


def millions(value):
    if value is None:
        return "—"
    return f"{value / 1e6:,.2f}"


def label(row):
    if row.get("model_label"):
        return row["model_label"]
    name = os.path.basename(row["model"])
    return name[: -len(".toml")] if name.endswith(".toml") else name


def engine(row):
    return row.get("engine") or "lookout"


def setup(row):
    if engine(row) == "lookout":
        parts = [f"lookout {row.get('lookout_revision', '?')}"]
    elif engine(row) == "ncnn":
        parts = [
            f"ncnn {row.get('ncnn', '?')} ({row.get('converter', 'pnnx ?')}), Python {row.get('python', '?')}, "
            f"numpy {row.get('numpy', '?')}, Pillow {row.get('pillow', '?')}"
        ]
    else:
        parts = [
            f"onnxruntime {row.get('onnxruntime', '?')}, Python {row.get('python', '?')}, "
            f"numpy {row.get('numpy', '?')}, Pillow {row.get('pillow', '?')}"
        ]
    parts.append(row.get("qemu_version", "qemu ?"))
    if "frames" in row:
        parts.append(f"per frame over frames 2-{row['frames'] + 1}")
    if "plugin" in row:
        parts.append(f"plugin {row['plugin']}")
    if "view" in row:
        parts.append(f"view {row['view'].split(':')[0]}")
    return ", ".join(parts)


def ratio_cell(num, den):
    if num is None or not den:
        return "—"
    return f"{num / den:.2f}"


def main():
    parser = argparse.ArgumentParser(
        description="Markdown table of scripts/insn-count JSON files (instructions per frame)."
    )
    parser.add_argument("files", nargs="+", metavar="FILE.json")
    parser.add_argument("--ratio", action="store_true", help="add end to end / inference per CPU")
    parser.add_argument(
        "--versus",
        action="store_true",
        help="with other engines' rows: add onnxruntime / lookout and ncnn / lookout (infer) and "
        "Python / lookout (e2e) per CPU",
    )
    parser.add_argument("--no-notes", action="store_true", help="no set-up lines under the table")
    args = parser.parse_args()

    cells = {}
    models = []
    cpus = []
    setups = []
    quant = {}
    for path in args.files:
        for row in read_rows(path):
            key = (label(row), row["cpu"], engine(row))
            if key in cells:
                print(
                    f"insn_table.py: {key[0]} on {key[1]}"
                    + ("" if key[2] == "lookout" else f" ({key[2]})")
                    + f" measured twice; using {path}'s",
                    file=sys.stderr,
                )
            cells[key] = row
            if key[0] not in models:
                models.append(key[0])
            if row["cpu"] not in cpus:
                cpus.append(row["cpu"])
            if row.get("quantization"):
                quant[key[0]] = row["quantization"]
            s = setup(row)
            if s not in setups:
                setups.append(s)
    if not cells:
        fail("no rows in " + ", ".join(args.files))
    cpus.sort(key=lambda c: (CPU_ORDER.index(c) if c in CPU_ORDER else len(CPU_ORDER), c))
    if any(e != "lookout" for (_, _, e) in cells):
        lines = engines_table(cells, models, cpus, quant, args)
    else:
        lines = lookout_table(cells, models, cpus, quant, args)
    print("\n".join(lines))
    if not args.no_notes:
        print()
        for s in setups:
            print(f"Millions of aarch64 instructions per frame under qemu-user ({s}); scripts/insn-count.")


def value(cells, model, cpu, eng, what):
    row = cells.get((model, cpu, eng))
    return None if row is None else row.get(f"{what}_insns_per_frame")


def engines_table(cells, models, cpus, quant, args):
    """The engines side by side: per CPU, the COLUMNS some row fills (then any other engine's)."""
    columns = [c for c in COLUMNS if any(value(cells, m, cpu, c[0], c[1]) is not None
                                         for m in models for cpu in cpus)]
    known = {(e, w) for e, w, _ in COLUMNS}
    for (_, _, e) in sorted(cells):
        for what in ("infer", "e2e"):
            if (e, what) not in known and any(value(cells, m, cpu, e, what) is not None
                                              for m in models for cpu in cpus):
                columns.append((e, what, f"{e} {what}"))
                known.add((e, what))
    have = {(e, w) for e, w, _ in columns}
    extras = []
    if args.ratio:
        if {("lookout", "infer"), ("lookout", "e2e")} <= have:
            extras.append(("lookout e2e / infer", ("lookout", "e2e"), ("lookout", "infer")))
        if {("ort", "infer"), ("python", "e2e")} <= have:
            extras.append(("Python e2e / onnxruntime infer", ("python", "e2e"), ("ort", "infer")))
    if args.versus:
        if {("lookout", "infer"), ("ort", "infer")} <= have:
            extras.append(("onnxruntime / lookout infer", ("ort", "infer"), ("lookout", "infer")))
        if {("lookout", "infer"), ("ncnn", "infer")} <= have:
            extras.append(("ncnn / lookout infer", ("ncnn", "infer"), ("lookout", "infer")))
        if {("lookout", "e2e"), ("python", "e2e")} <= have:
            extras.append(("Python / lookout e2e", ("python", "e2e"), ("lookout", "e2e")))

    header = model_cells("model", "quantization", quant)
    for cpu in cpus:
        title = CPU_TITLE.get(cpu, cpu)
        header += [f"{title}: {t} M insns" for _, _, t in columns]
        header += [f"{title}: {t}" for t, _, _ in extras]
    rows = []
    for model in models:
        cols = model_cells(f"`{model}`", quant.get(model, "") if quant else "", quant)
        for cpu in cpus:
            cols += [millions(value(cells, model, cpu, e, w)) for e, w, _ in columns]
            cols += [ratio_cell(value(cells, model, cpu, *num), value(cells, model, cpu, *den))
                     for _, num, den in extras]
        rows.append(cols)
    return markdown(header, rows)


def model_cells(model, quantization, quant):
    """A row's first cells: the model, and its quantization when the table shows it."""
    return [model, quantization] if quant else [model]


def markdown(header, rows):
    """A Markdown table: the first column left-aligned, the figures right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(cols) + " |" for cols in rows]


def lookout_table(cells, models, cpus, quant, args):
    """lookout's rows only: per CPU, infer and e2e (and --ratio's e2e / infer)."""
    header = model_cells("model", "quantization", quant)
    for cpu in cpus:
        title = CPU_TITLE.get(cpu, cpu)
        header += [f"{title}: infer M insns", f"{title}: e2e M insns"]
        if args.ratio:
            header.append(f"{title}: e2e / infer")
    rows = []
    for model in models:
        cols = model_cells(f"`{model}`", quant.get(model, "") if quant else "", quant)
        for cpu in cpus:
            row = cells.get((model, cpu, "lookout"))
            if row is None:
                cols += ["—", "—"] + (["—"] if args.ratio else [])
                continue
            cols += [millions(row["infer_insns_per_frame"]), millions(row["e2e_insns_per_frame"])]
            if args.ratio:
                ratio = row.get("ratio")
                cols.append("—" if ratio is None else f"{ratio:.2f}")
        rows.append(cols)
    return markdown(header, rows)


if __name__ == "__main__":
    main()
