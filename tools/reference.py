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
            With keypoints = [K, D] (pose), K*D more rows follow the class
            scores: x, y (and a visibility score when D = 3) per keypoint, in
            box_units; D = 2 gives visibility 1.
  yolov5    [1, N, 5+C]: cx, cy, w, h, objectness, C class scores;
            score = objectness * best class score.
  end2end   [1, N, 6 (+K*D)]: rows of x0, y0, x1, y1, score, class (as a float),
            then keypoints as for yolov8. NMS ran in the graph: a row is kept
            when score >= thresholds.score, the class rounds to a label index
            within 1e-3 and the box is finite with x1 > x0 and y1 > y0; kept
            rows are ranked (score desc, ties by row) and cut at
            max_detections, never suppressed.
  ssd       two outputs found by name: `scores` [1, N, C] and `boxes` [1, N, 4]
            ([1, N, K >= 4] for anchor-offsets; values after the 4th, e.g.
            keypoints, are ignored). score = the value, or sigmoid(value) with
            score_activation = "sigmoid". One candidate per (row, class) with
            score >= thresholds.score, in row then class order, except the
            background_class if one is given. Boxes by box_encoding:
              corners         x0, y0, x1, y1
              center-offsets  cx = p.cx + d0*v0*p.w, cy = p.cy + d1*v0*p.h,
                              w = p.w*exp(d2*v1), h = p.h*exp(d3*v1)   (SSD, UltraFace)
              anchor-offsets  cx = p.cx + d0*v0*p.w, cy = p.cy + d1*v0*p.h,
                              w = d2*v1*p.w, h = d3*v1*p.h   (linear: MediaPipe BlazeFace)
            with (v0, v1) = priors.variance (default 0.1, 0.2) and p the prior of
            the row. Priors (W x H input): for each step s with its min_sizes,
            for each row j < ceil(H/s), column i < ceil(W/s), size m:
            (cx, cy, w, h) = ((i+0.5)/(W/s), (j+0.5)/(H/s), m/W, m/H), each
            clamped to [0, 1], computed in float64 and stored as float32; their
            count must equal N. Box values are in box_units (default
            "normalized", x by W and y by H to input pixels; prior-based
            encodings must be normalized).
  then      drop score < thresholds.score; (except end2end) class-aware greedy NMS in model-input
            coordinates (sort by score desc, ties by candidate index; suppress a
            box whose IoU with a kept box of the same class is > thresholds.iou);
            keep at most max_detections; map to source pixels
            (x - pad) / scale + crop offset, clamp to the image; keypoints map
            and clamp the same way.
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


def priors(spec, W, H):
    """[P, 4] float32 priors (cx, cy, w, h), normalized to the W x H input, in output order."""
    rows = []
    for step, sizes in zip(spec["steps"], spec["min_sizes"], strict=True):
        sx, sy = W / step, H / step  # the unrounded ratio, not the cell count
        for j in range(-(-H // step)):
            for i in range(-(-W // step)):
                for size in sizes:
                    size = float(np.float32(size))  # manifest floats are f32
                    rows.append(((i + 0.5) / sx, (j + 0.5) / sy, size / W, size / H))
    return np.clip(np.asarray(rows, np.float64).reshape(-1, 4), 0.0, 1.0).astype(np.float32)


def ssd_candidates(outs, m):
    """SSD outputs (dict name -> array) -> (boxes, scores, classes), one per (row, class)."""
    spec = m["output"]
    _, H, W = input_geometry(m)
    for key in ("scores", "boxes"):
        if spec[key] not in outs:
            raise SystemExit(f"model has no output {spec[key]!r} (outputs: {', '.join(outs)})")
    s = np.asarray(outs[spec["scores"]], np.float64)
    d = np.asarray(outs[spec["boxes"]], np.float64)
    encoding = spec["box_encoding"]
    if s.ndim != 3 or s.shape[0] != 1 or s.shape[2] != len(m["labels"]):
        raise SystemExit(f"scores {list(s.shape)}, expected [1, N, {len(m['labels'])}]")
    n = s.shape[1]
    if d.ndim != 3 or d.shape[:2] != (1, n) or not (
            d.shape[2] >= 4 if encoding == "anchor-offsets" else d.shape[2] == 4):
        k = "K >= 4" if encoding == "anchor-offsets" else "4"
        raise SystemExit(f"boxes {list(d.shape)}, expected [1, {n}, {k}]")
    s, d = s[0], d[0, :, :4]
    if spec.get("score_activation", "none") == "sigmoid":
        with np.errstate(over="ignore"):  # exp(710+) is inf, and 1 / (1 + inf) the right 0
            s = 1.0 / (1.0 + np.exp(-s))
    units = spec.get("box_units", "normalized")
    if encoding == "corners":
        boxes = d.copy()
    elif encoding in ("center-offsets", "anchor-offsets"):
        if units != "normalized":
            raise SystemExit(f"box_encoding {encoding!r} needs box_units = \"normalized\"")
        pri = spec["priors"]
        p = priors(pri, W, H).astype(np.float64)
        if len(p) != n:
            raise SystemExit(f"{len(p)} priors for {n} rows")
        v0, v1 = (float(np.float32(v)) for v in pri.get("variance", [0.1, 0.2]))
        cx = p[:, 0] + d[:, 0] * v0 * p[:, 2]
        cy = p[:, 1] + d[:, 1] * v0 * p[:, 3]
        if encoding == "center-offsets":
            with np.errstate(over="ignore"):  # only rows far below any threshold overflow
                w = p[:, 2] * np.exp(d[:, 2] * v1)
                h = p[:, 3] * np.exp(d[:, 3] * v1)
        else:
            w = d[:, 2] * v1 * p[:, 2]
            h = d[:, 3] * v1 * p[:, 3]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    else:
        raise SystemExit(f"reference.py does not know box_encoding {encoding!r}")
    if units == "normalized":
        boxes = boxes * np.array([W, H, W, H], np.float64)
    # Every (row, class) is a candidate, row-major; nms() applies the score threshold and keeps
    # this order for ties. The background class never is one.
    rows, classes = np.meshgrid(np.arange(n), np.arange(s.shape[1]), indexing="ij")
    rows, classes = rows.reshape(-1), classes.reshape(-1)
    bg = spec.get("background_class")
    if bg is not None:
        keep = classes != bg
        rows, classes = rows[keep], classes[keep]
    return boxes[rows], s[rows, classes], classes


def keypoint_array(values, spec, W, H):
    """[N, K*D] keypoint values -> [N, K, 3] (x, y, visibility) in model px."""
    k, d = spec["keypoints"]
    kp = np.asarray(values, np.float64).reshape(len(values), k, d)
    scale = np.array([W, H]) if spec.get("box_units", "pixels") == "normalized" else np.array([1.0, 1.0])
    xy = kp[:, :, :2] * scale
    vis = kp[:, :, 2:3] if d == 3 else np.ones((len(values), k, 1))
    return np.concatenate([xy, vis], axis=2)


def candidates(out, m):
    """Raw output -> (boxes [N,4] x0,y0,x1,y1 model px, scores [N], classes [N],
    keypoints [N, K, 3] or None).

    `out` is the one output array, or for ssd a dict of all outputs by name."""
    spec = m["output"]
    _, H, W = input_geometry(m)
    if spec["decoder"] == "ssd":
        return ssd_candidates(out, m) + (None,)
    a = np.asarray(out, np.float64)
    extra = spec["keypoints"][0] * spec["keypoints"][1] if "keypoints" in spec else 0
    units = np.array([W, H, W, H]) if spec.get("box_units", "pixels") == "normalized" else np.ones(4)
    if spec["decoder"] == "end2end":
        a = a[0]  # [N, 6 + K*D]
        boxes = a[:, :4] * units
        scores, cls = a[:, 4], a[:, 5]
        classes = np.rint(cls)
        usable = ((classes >= 0) & (classes < len(m["labels"])) & (np.abs(cls - classes) < 1e-3)
                  & np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
                  & np.isfinite(scores))
        scores = np.where(usable, scores, -np.inf)
        classes = np.where(usable, classes, 0).astype(np.int64)
        kp = keypoint_array(a[:, 6:], spec, W, H) if extra else None
        return boxes, scores, classes, kp
    if spec["decoder"] == "yolov8":
        a = a[0].T  # [N, 4+C (+K*D)]
        cls_scores = a[:, 4:a.shape[1] - extra]
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
    kp = keypoint_array(a[:, a.shape[1] - extra:], spec, W, H) if extra else None
    return boxes, scores, classes, kp


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
    boxes, scores, classes, kp = candidates(out, m)
    iou_th = float("inf") if m["output"]["decoder"] == "end2end" else th.get("iou", 0.45)
    keep = nms(boxes, scores, classes, th.get("score", 0.25), iou_th, th.get("max_detections", 100))
    found = []
    for i in keep:
        rec = {"label_id": int(classes[i]), "label": m["labels"][int(classes[i])], "score": float(scores[i]),
               "box": to_source(boxes[i], t, w, h)}
        if kp is not None:
            rec["keypoints"] = [to_source([x, y, x, y], t, w, h)[:2] + [float(v)] for x, y, v in kp[i]]
        found.append(rec)
    return found


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
    elif m["output"]["decoder"] == "ssd":
        by_name = dict(zip((o.name for o in sess.get_outputs()), outs))
        rec["detections"] = decode_detect(by_name, m, t, w, h)
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
