#!/usr/bin/env python3
"""The other side of tests/arch/compat.rs: onnxruntime and the numpy reference decoder on what
lookout computed for a compatibility model (tests/fixtures/compat/, scripts/export-compat).

    compat_check.py --manifest M.toml --outputs DIR [--candidates 50]

DIR holds what the test wrote: `outputs.json` ([{"name", "shape", "file"}], tract's outputs in
graph order) and each output's values as little-endian float32 in `file`. This script
  1. runs onnxruntime (ORT_DISABLE_ALL, one thread: tools/reference.py's session) on the
     compatibility suite's test input at the manifest's input shape:
         x[i] = ((i * 0x9E3779B9) mod 2^32 >> 8) / 2^24, float32, i the flat C-order index
     and reports, per output, the largest absolute difference from tract's values and the
     largest absolute onnxruntime value (the scale the difference is judged against); an
     end-to-end detector's rows are compared as a set (rows_agreement);
  2. decodes tract's own tensors with tools/reference.py's decoders, so lookout's decoder is
     compared on identical numbers (random weights put scores anywhere; a threshold applied to
     two runtimes' slightly different scores would compare nothing). Detectors are decoded at
     a score threshold that lets the `--candidates` best candidates through, returned as
     `threshold` for the test to use too; boxes stay in model-input pixels.
Prints one JSON object. Needs tools/requirements-ref.txt.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402


def test_input(shape):
    n = int(np.prod(shape))
    x = ((np.arange(n, dtype=np.uint64) * 0x9E3779B9 % 2**32) >> 8).astype(np.float32)
    return (x / np.float32(2**24)).reshape(shape)


def rows_agreement(got, ref):
    """End-to-end rows (x0, y0, x1, y1, score, class, ...) compared as a set: the graph's TopK
    orders equal scores by index in one runtime and otherwise in another, and random weights
    give many near-equal scores. Each of tract's rows scoring clearly above the lowest row
    onnxruntime kept is matched with onnxruntime's nearest row (largest difference over the
    row's values); rows at the selection's edge may differ in which one got in, and are not
    compared."""
    margin = 1e-3 * float(np.abs(ref[:, 4]).max(initial=0.0))
    lowest = float(ref[:, 4].min()) if len(ref) else 0.0
    inside = got[got[:, 4] > lowest + margin]
    worst = 0.0
    for row in inside:
        worst = max(worst, float(np.abs(ref - row).max(axis=1).min()))
    return {"max_abs": worst, "max_ref": float(np.abs(ref).max(initial=0.0)), "values": int(inside.size),
            "rows": int(len(inside))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--outputs", required=True)
    ap.add_argument("--candidates", type=int, default=50)
    args = ap.parse_args()
    m = reference.load_manifest(args.manifest)
    listed = json.load(open(os.path.join(args.outputs, "outputs.json")))
    ours = {}
    for o in listed:
        data = np.fromfile(os.path.join(args.outputs, o["file"]), dtype="<f4")
        ours[o["name"]] = data.reshape(o["shape"])

    sess = reference.session(m)
    x = test_input(m["input"]["shape"])
    names = [o.name for o in sess.get_outputs()]
    theirs = dict(zip(names, sess.run(None, {m["input"]["name"]: x})))
    agreement = {}
    for name, ref in theirs.items():
        got = ours.get(name)
        if got is None or got.shape != ref.shape:
            agreement[name] = {"error": f"tract gave {None if got is None else list(got.shape)}, onnxruntime {list(ref.shape)}"}
            continue
        got, ref = got.astype(np.float64), ref.astype(np.float64)
        if m["output"]["decoder"] == "end2end":
            agreement[name] = rows_agreement(got[0], ref[0])
            continue
        diff = np.abs(got - ref)
        agreement[name] = {"max_abs": float(diff.max(initial=0.0)), "max_ref": float(np.abs(ref).max(initial=0.0)),
                           "values": int(ref.size)}

    spec = m["output"]
    first = ours[listed[0]["name"]]
    result = {"agreement": agreement}
    if spec["decoder"] == "classify":
        # Every class, however unsure a randomly initialised classifier is.
        m.setdefault("thresholds", {})["score"] = 0.0
        result["threshold"] = 0.0
        result["decoded"] = reference.decode_classify(first, m)
    elif spec["decoder"] in ("yolov8", "yolov5", "end2end"):
        _, scores, _, _ = reference.candidates(first, m)
        finite = np.sort(scores[np.isfinite(scores)])[::-1]
        threshold = float(finite[min(args.candidates, len(finite)) - 1]) if len(finite) else 1.0
        m.setdefault("thresholds", {})["score"] = threshold
        boxes, scores, classes, kp = reference.candidates(first, m)
        th = m["thresholds"]
        iou = float("inf") if spec["decoder"] == "end2end" else th.get("iou", 0.45)
        keep = reference.nms(boxes, scores, classes, threshold, iou, th.get("max_detections", 100))
        result["threshold"] = threshold
        result["decoded"] = [
            {"label_id": int(classes[i]), "score": float(scores[i]), "box": [float(v) for v in boxes[i]],
             **({"keypoints": [[float(v) for v in p] for p in kp[i]]} if kp is not None else {})}
            for i in keep
        ]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
