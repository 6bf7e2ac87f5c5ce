"""Running the lookout binary from the tool chain: one place for how a failure is reported and
how `lookout eval` is read, shared by tools/retrain and tools/drift-loop."""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*cmd):
    """Runs `cmd` from the repository root; its stdout, or SystemExit naming the command and
    carrying its stderr."""
    out = subprocess.run(list(cmd), cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {out.stderr.strip()}")
    return out.stdout


def detector_map(binary, manifest, folder):
    """`lookout eval` of the detector of `manifest` on a labelled `folder`: mAP@0.5 and
    mAP@0.5:0.95 in points (one decimal), and the images and objects it counted."""
    report = json.loads(run(binary, "eval", "--model", manifest, "--data", folder, "--json"))
    return {"map50": round(100 * report["map"]["map50"], 1), "map50_95": round(100 * report["map"]["map50_95"], 1),
            "images": report["images"], "objects": report["objects"]}
