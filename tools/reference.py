#!/usr/bin/env python3
"""Reference pipeline for lookout models: what the Rust runtime must reproduce.

    python3 tools/reference.py --manifest models/shapes-detector.toml tests/images/detect

Pre-processing (Pillow + numpy, tools/preprocess.py), inference (onnxruntime)
and decoding (numpy), all driven by the model's manifest. Prints one JSON
object per image, sorted by file name:

    {"frame": "a.png", "classes": [{"label_id": 0, "label": "circle", "score": 0.98}, ...]}
    {"frame": "b.png", "detections": [{"label_id": 1, "label": "square", "score": 0.91,
                                       "box": [x0, y0, x1, y1]}, ...]}

Boxes are in source-image pixels. Needs only tools/requirements-ref.txt.

Decoding rules, chosen to be simple enough to re-implement exactly:
  classify  optional softmax, scores sorted descending (ties: lower id first),
            drop scores < thresholds.score, keep top_k.
  yolov8    [1, 4+C, N]: cx, cy, w, h, C class scores; a candidate's class is
            its best-scoring class (ties: lower id).
  yolov5    [1, N, 5+C]: cx, cy, w, h, objectness, C class scores;
            score = objectness * best class score.
  then      drop score < thresholds.score; class-aware greedy NMS in model-input
            coordinates (sort by score desc, ties by candidate index; suppress a
            box whose IoU with a kept box of the same class is > thresholds.iou);
            keep at most max_detections; map to source pixels
            (x - pad) / scale + crop offset, clamp to the image.
"""
import argparse
import json
import os
import sys
import tomllib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import preprocess as pp  # noqa: E402

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp")


def load_manifest(path):
    with open(path, "rb") as f:
        m = tomllib.load(f)
    m["_dir"] = os.path.dirname(os.path.abspath(path))
    return m


def input_geometry(m):
    """(channels, H, W) from the manifest's input shape and layout."""
    shape = m["input"]["shape"]
    if m["input"]["layout"] == "nchw":
        return shape[1], shape[2], shape[3]
    return shape[3], shape[1], shape[2]


def prepare(img, m):
    """PIL image -> (input tensor, transform back to source pixels)."""
    pre = m["preprocess"]
    _, H, W = input_geometry(m)
    u8, t = pp.geometry(img.convert("RGB"), pre["resize"], W, H,
                        pre.get("pad_value", 114), pre.get("interpolation", "bilinear"))
    if m["input"]["dtype"] == "u8":
        # A u8 model takes raw pixels; only channel order / layout apply.
        x = u8
        if pre["color"] == "bgr":
            x = x[..., ::-1]
        elif pre["color"] == "gray":
            x = np.round(pp.normalize(u8, "gray", 1.0, (0,), (1,), "nhwc"))
        x = x.astype(np.uint8)
        if m["input"]["layout"] == "nchw":
            x = np.moveaxis(x, -1, 0)
        x = np.ascontiguousarray(x)
    else:
        x = pp.normalize(u8, pre["color"], pre["scale"], pre["mean"], pre["std"], m["input"]["layout"])
    return x[None], t


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def decode_classify(out, m):
    spec, th = m["output"], m.get("thresholds", {})
    v = np.asarray(out, np.float64).reshape(-1)
    if spec.get("softmax", False):
        v = softmax(v)
    order = sorted(range(len(v)), key=lambda i: (-v[i], i))
    labels = m["labels"]
    res = [{"label_id": i, "label": labels[i], "score": float(v[i])}
           for i in order if v[i] >= th.get("score", 0.25)]
    return res[:spec.get("top_k", 5)]


def candidates(out, m):
    """Raw output -> (boxes [N,4] x0,y0,x1,y1 model px, scores [N], classes [N])."""
    spec = m["output"]
    _, H, W = input_geometry(m)
    a = np.asarray(out, np.float64)
    if spec["decoder"] == "yolov8":
        a = a[0].T  # [N, 4+C]
        cls_scores = a[:, 4:]
    elif spec["decoder"] == "yolov5":
        a = a[0]  # [N, 5+C]
        cls_scores = a[:, 5:] * a[:, 4:5]
    else:
        raise SystemExit(f"reference.py does not decode {spec['decoder']!r}")
    classes = cls_scores.argmax(axis=1)
    scores = cls_scores[np.arange(len(a)), classes]
    cx, cy, w, h = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    if spec.get("box_units", "pixels") == "normalized":
        cx, w, cy, h = cx * W, w * W, cy * H, h * H
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes, scores, classes


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(boxes, scores, classes, score_th, iou_th, max_det):
    """Indices kept by class-aware greedy NMS, best first."""
    order = sorted((i for i in range(len(scores)) if scores[i] >= score_th), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if len(keep) == max_det:
            break
        if all(classes[k] != classes[i] or iou(boxes[k], boxes[i]) <= iou_th for k in keep):
            keep.append(i)
    return keep


def to_source(box, t, w, h):
    x0 = (box[0] - t["ox"]) / t["sx"] + t["cx"]
    y0 = (box[1] - t["oy"]) / t["sy"] + t["cy"]
    x1 = (box[2] - t["ox"]) / t["sx"] + t["cx"]
    y1 = (box[3] - t["oy"]) / t["sy"] + t["cy"]
    return [min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w), min(max(y1, 0.0), h)]


def decode_detect(out, m, t, w, h):
    th = m.get("thresholds", {})
    boxes, scores, classes = candidates(out, m)
    keep = nms(boxes, scores, classes, th.get("score", 0.25), th.get("iou", 0.45), th.get("max_detections", 100))
    return [{"label_id": int(classes[i]), "label": m["labels"][int(classes[i])], "score": float(scores[i]),
             "box": to_source(boxes[i], t, w, h)} for i in keep]


def session(m):
    import onnxruntime as ort  # imported here so the decoders above are usable without it

    opts = ort.SessionOptions()
    # Plain, deterministic execution: no fused or reordered float maths.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(os.path.join(m["_dir"], m["model"]["file"]), opts,
                                providers=["CPUExecutionProvider"])


def run_image(sess, m, path):
    img = Image.open(path)
    w, h = img.size
    x, t = prepare(img, m)
    outs = sess.run(None, {m["input"]["name"]: x})
    rec = {"frame": os.path.basename(path)}
    if m["output"]["decoder"] == "classify":
        rec["classes"] = decode_classify(outs[0], m)
    else:
        rec["detections"] = decode_detect(outs[0], m, t, w, h)
    return rec


def expand(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += [os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXT)]
        else:
            files.append(p)
    return sorted(files, key=lambda f: (os.path.basename(f), f))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True, help="model manifest (.toml)")
    ap.add_argument("images", nargs="+", help="image files or directories")
    args = ap.parse_args()
    m = load_manifest(args.manifest)
    sess = session(m)
    for path in expand(args.images):
        print(json.dumps(run_image(sess, m, path)))


if __name__ == "__main__":
    main()
