#!/usr/bin/env python3
"""Re-head a YOLOv8-layout detector into the other layouts lookout decodes.

    python3 tools/relayout.py models/shapes-detector.toml OUT_DIR

writes, beside manifests with matching sha256:
  OUT_DIR/shapes-detector-v5.onnx        YOLOv5 [1, N, 5+C]: objectness = best class score,
                                          class probabilities = scores / objectness
  OUT_DIR/shapes-detector-ssd.onnx       SSD/UltraFace: scores [1, N, 1+C] with background = 1 - best,
                                          boxes [1, N, 4] as normalised corners
  OUT_DIR/shapes-detector-priors.onnx    SSD with boxes encoded as offsets against priors
                                          (one 16 px prior per stride-8 cell, variances 0.1/0.2)
  OUT_DIR/shapes-detector-pose.onnx      YOLOv8-pose [1, 4+C+2*3, N]: two keypoints per candidate,
                                          its box's top-left and bottom-right corners, each with
                                          the candidate's best score as visibility
  OUT_DIR/shapes-detector-e2e.onnx       end-to-end [1, 100, 6]: ONNX NonMaxSuppression inside the
                                          graph (class-aware, IoU 0.45, score 0.25, as the
                                          manifest's thresholds), rows x0, y0, x1, y1, score,
                                          class, zero-padded to 100
  OUT_DIR/shapes-detector-e2e-pose.onnx  the same with the two keypoints: [1, 100, 6+2*3]

The trained network is unchanged; only operators appended after its output differ, and each
layout is constructed so that a correct decoder finds the same boxes and scores as the YOLOv8
decoder on the original. That lets the tests run every decoder on a real trained model.
Needs only `onnx` and `numpy` (tools/requirements-ref.txt).
"""
import argparse
import hashlib
import os
import re

import numpy as np
import onnx
from onnx import helper, numpy_helper

VARIANCE = (0.1, 0.2)
PRIOR_STEP = 8
PRIOR_SIZE = 16.0


def const(graph, name, value):
    graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
    return name


def ints(graph, name, value):
    graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
    return name


def load_headless(path):
    """The model with its output renamed to `v8`, ready for new operators after it."""
    model = onnx.load(path)
    graph = model.graph
    (output,) = graph.output
    for node in graph.node:
        node.output[:] = ["v8" if o == output.name else o for o in node.output]
        # Runtimes name nodes after their outputs; keep the old name free for the new output.
        if node.name == output.name:
            node.name = "v8"
    dims = [d.dim_value for d in output.type.tensor_type.shape.dim]
    del graph.output[:]
    return model, dims


def split_candidates(graph, classes):
    """[1, 4+C, N] -> t [1, N, 4+C], box [1, N, 4], cls [1, N, C], best [1, N, 1]."""
    add = graph.node.append
    add(helper.make_node("Transpose", ["v8"], ["t"], perm=[0, 2, 1]))
    axis = ints(graph, "axis2", [2])
    add(helper.make_node("Slice", ["t", ints(graph, "s0", [0]), ints(graph, "s4", [4]), axis], ["box"]))
    add(helper.make_node("Slice", ["t", "s4", ints(graph, "s4c", [4 + classes]), axis], ["cls"]))
    add(helper.make_node("ReduceMax", ["cls"], ["best"], axes=[2], keepdims=1))


def output(graph, name, shape):
    graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape))


def yolov5(model, classes, n):
    graph = model.graph
    split_candidates(graph, classes)
    add = graph.node.append
    add(helper.make_node("Max", ["best", const(graph, "eps", 1e-12)], ["obj"]))
    add(helper.make_node("Div", ["cls", "obj"], ["probs"]))
    add(helper.make_node("Concat", ["box", "obj", "probs"], ["output0"], axis=2))
    output(graph, "output0", [1, n, 5 + classes])


def corners(graph, width, height):
    """box (cx, cy, w, h in pixels) -> [1, N, 4] normalised corners named `corners`."""
    add = graph.node.append
    axis = "axis2"
    add(helper.make_node("Slice", ["box", "s0", ints(graph, "s2", [2]), axis], ["xy"]))
    add(helper.make_node("Slice", ["box", "s2", "s4", axis], ["wh"]))
    add(helper.make_node("Mul", ["wh", const(graph, "half", 0.5)], ["halfwh"]))
    add(helper.make_node("Sub", ["xy", "halfwh"], ["p0"]))
    add(helper.make_node("Add", ["xy", "halfwh"], ["p1"]))
    add(helper.make_node("Concat", ["p0", "p1"], ["px"], axis=2))
    add(helper.make_node("Div", ["px", const(graph, "size4", [width, height, width, height])], ["corners"]))


def background_scores(graph):
    add = graph.node.append
    add(helper.make_node("Sub", [const(graph, "one", 1.0), "best"], ["background"]))
    add(helper.make_node("Concat", ["background", "cls"], ["scores"], axis=2))


def ssd(model, classes, n, width, height):
    graph = model.graph
    split_candidates(graph, classes)
    corners(graph, width, height)
    background_scores(graph)
    graph.node.append(helper.make_node("Identity", ["corners"], ["boxes"]))
    output(graph, "scores", [1, n, 1 + classes])
    output(graph, "boxes", [1, n, 4])


def priors(width, height):
    """UltraFace's generate_priors for one stride and one size: (cx, cy, w, h) normalised."""
    fw, fh = -(-width // PRIOR_STEP), -(-height // PRIOR_STEP)
    rows = []
    for j in range(fh):
        for i in range(fw):
            rows.append([(i + 0.5) / (width / PRIOR_STEP), (j + 0.5) / (height / PRIOR_STEP),
                         PRIOR_SIZE / width, PRIOR_SIZE / height])
    return np.clip(np.asarray(rows, dtype=np.float32), 0.0, 1.0)


def ssd_priors(model, classes, n, width, height):
    graph = model.graph
    p = priors(width, height)
    if len(p) != n:
        raise SystemExit(f"{n} candidates but {len(p)} priors: the grid is not one stride-{PRIOR_STEP} map")
    split_candidates(graph, classes)
    background_scores(graph)
    add = graph.node.append
    axis = "axis2"
    # Normalise cx, cy, w, h, then encode against the priors: the inverse of the SSD decoding.
    add(helper.make_node("Div", ["box", const(graph, "size4", [width, height, width, height])], ["nbox"]))
    add(helper.make_node("Slice", ["nbox", "s0", ints(graph, "s2", [2]), axis], ["nxy"]))
    add(helper.make_node("Slice", ["nbox", "s2", "s4", axis], ["nwh"]))
    add(helper.make_node("Sub", ["nxy", const(graph, "pxy", p[None, :, :2])], ["dxy_raw"]))
    add(helper.make_node("Div", ["dxy_raw", const(graph, "pwh_v0", p[None, :, 2:] * VARIANCE[0])], ["dxy"]))
    add(helper.make_node("Div", ["nwh", const(graph, "pwh", p[None, :, 2:])], ["ratio"]))
    add(helper.make_node("Log", ["ratio"], ["logratio"]))
    add(helper.make_node("Div", ["logratio", const(graph, "v1", VARIANCE[1])], ["dwh"]))
    add(helper.make_node("Concat", ["dxy", "dwh"], ["boxes"], axis=2))
    output(graph, "scores", [1, n, 1 + classes])
    output(graph, "boxes", [1, n, 4])


def pixel_corners(graph):
    """box (cx, cy, w, h in pixels) -> p0, p1 [1, N, 2] corner points in pixels."""
    add = graph.node.append
    add(helper.make_node("Slice", ["box", "s0", ints(graph, "s2", [2]), "axis2"], ["xy"]))
    add(helper.make_node("Slice", ["box", "s2", "s4", "axis2"], ["wh"]))
    add(helper.make_node("Mul", ["wh", const(graph, "half", 0.5)], ["halfwh"]))
    add(helper.make_node("Sub", ["xy", "halfwh"], ["p0"]))
    add(helper.make_node("Add", ["xy", "halfwh"], ["p1"]))


def corner_keypoints(graph):
    """kp [1, N, 6]: the box's corners as two keypoints, the best score as their visibility."""
    pixel_corners(graph)
    graph.node.append(helper.make_node("Concat", ["p0", "best", "p1", "best"], ["kp"], axis=2))


def pose(model, classes, n):
    graph = model.graph
    split_candidates(graph, classes)
    corner_keypoints(graph)
    add = graph.node.append
    add(helper.make_node("Transpose", ["kp"], ["kp_t"], perm=[0, 2, 1]))
    add(helper.make_node("Concat", ["v8", "kp_t"], ["output0"], axis=1))
    output(graph, "output0", [1, 4 + classes + 6, n])


E2E_ROWS = 100


def end2end(model, classes, n, keypoints):
    graph = model.graph
    split_candidates(graph, classes)
    corner_keypoints(graph)
    add = graph.node.append
    add(helper.make_node("Concat", ["p0", "p1"], ["xyxy"], axis=2))  # [1, N, 4] pixels
    add(helper.make_node("Transpose", ["cls"], ["cls_t"], perm=[0, 2, 1]))  # [1, C, N]
    add(helper.make_node("NonMaxSuppression",
                         ["xyxy", "cls_t", ints(graph, "max_out", [E2E_ROWS]),
                          const(graph, "iou_th", [0.45]), const(graph, "score_th", [0.25])],
                         ["selected"], center_point_box=0))  # [M, 3]: batch, class, box
    axis1 = ints(graph, "axis1", [1])
    add(helper.make_node("Slice", ["selected", ints(graph, "c1", [1]), ints(graph, "c2", [2]), axis1], ["sel_cls"]))
    add(helper.make_node("Slice", ["selected", "c2", ints(graph, "c3", [3]), axis1], ["sel_box"]))
    add(helper.make_node("Squeeze", ["sel_box", axis1], ["box_idx"]))  # [M]
    add(helper.make_node("Squeeze", ["xyxy", ints(graph, "axis0", [0])], ["xyxy0"]))  # [N, 4]
    add(helper.make_node("Gather", ["xyxy0", "box_idx"], ["sel_xyxy"], axis=0))  # [M, 4]
    add(helper.make_node("GatherND", ["cls_t", "selected"], ["sel_score"]))  # [M]
    add(helper.make_node("Unsqueeze", ["sel_score", axis1], ["sel_score1"]))
    add(helper.make_node("Cast", ["sel_cls"], ["sel_clsf"], to=onnx.TensorProto.FLOAT))
    parts = ["sel_xyxy", "sel_score1", "sel_clsf"]
    width = 6
    if keypoints:
        add(helper.make_node("Squeeze", ["kp", "axis0"], ["kp0"]))  # [N, 6]
        add(helper.make_node("Gather", ["kp0", "box_idx"], ["sel_kp"], axis=0))
        parts.append("sel_kp")
        width += 6
    add(helper.make_node("Concat", parts, ["rows"], axis=1))  # [M, width]
    # Zero rows after the selected ones, then the first E2E_ROWS: a fixed [E2E_ROWS, width].
    add(helper.make_node("Pad", ["rows", ints(graph, "pads", [0, 0, E2E_ROWS, 0])], ["padded"]))
    add(helper.make_node("Slice", ["padded", "s0", ints(graph, "rows_end", [E2E_ROWS]),
                                   ints(graph, "axis0b", [0])], ["fixed"]))
    add(helper.make_node("Unsqueeze", ["fixed", "axis0"], ["output0"]))
    output(graph, "output0", [1, E2E_ROWS, width])


def manifest_text(base, name, file_bytes, output_section, labels):
    sha = hashlib.sha256(file_bytes).hexdigest()
    text = re.sub(r'(?m)^name = ".*"$', f'name = "{name}"', base, count=1)
    text = re.sub(r'(?m)^file = ".*"$', f'file = "{name}.onnx"', text, count=1)
    text = re.sub(r'(?m)^sha256 = ".*"$', f'sha256 = "{sha}"', text, count=1)
    text = re.sub(r"(?m)^bytes = \d+$", f"bytes = {len(file_bytes)}", text, count=1)
    text = re.sub(r"(?m)^labels = \[.*\]$", "labels = [" + ", ".join(f'"{l}"' for l in labels) + "]", text, count=1)
    text = re.sub(r"(?ms)^\[output\]\n.*?(?=^\[)", "[output]\n" + output_section + "\n\n", text, count=1)
    # The reference statistics describe the base model's outputs, not a re-headed one's.
    text = re.sub(r"(?ms)^\[profile\]\n.*?(?=^\[|\Z)", "", text).rstrip() + "\n"
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", help="manifest of a YOLOv8-layout detector")
    ap.add_argument("out_dir")
    args = ap.parse_args()
    base = open(args.manifest).read()
    onnx_path = os.path.join(os.path.dirname(args.manifest), re.search(r'(?m)^file = "(.*)"$', base).group(1))
    labels = re.findall(r'"([^"]+)"', re.search(r"(?m)^labels = \[(.*)\]$", base).group(1))
    stem = os.path.splitext(os.path.basename(args.manifest))[0]
    os.makedirs(args.out_dir, exist_ok=True)
    _, dims = load_headless(onnx_path)
    _, rows, n = dims
    classes = rows - 4
    shape = re.search(r"(?m)^shape = \[1, 3, (\d+), (\d+)\]$", base)
    height, width = int(shape.group(1)), int(shape.group(2))
    variants = {
        "v5": (lambda m: yolov5(m, classes, n), 'decoder = "yolov5"\nbox_units = "pixels"', labels),
        "ssd": (lambda m: ssd(m, classes, n, width, height),
                'decoder = "ssd"\nscores = "scores"\nboxes = "boxes"\nbox_encoding = "corners"\n'
                'box_units = "normalized"\nbackground_class = 0', ["background"] + labels),
        "priors": (lambda m: ssd_priors(m, classes, n, width, height),
                   'decoder = "ssd"\nscores = "scores"\nboxes = "boxes"\nbox_encoding = "center-offsets"\n'
                   'box_units = "normalized"\nbackground_class = 0\n'
                   f'priors = {{ steps = [{PRIOR_STEP}], min_sizes = [[{PRIOR_SIZE}]], '
                   f'variance = [{VARIANCE[0]}, {VARIANCE[1]}] }}', ["background"] + labels),
        "pose": (lambda m: pose(m, classes, n), 'decoder = "yolov8"\nbox_units = "pixels"\nkeypoints = [2, 3]',
                 labels),
        "e2e": (lambda m: end2end(m, classes, n, False), 'decoder = "end2end"\nbox_units = "pixels"', labels),
        "e2e-pose": (lambda m: end2end(m, classes, n, True),
                     'decoder = "end2end"\nbox_units = "pixels"\nkeypoints = [2, 3]', labels),
    }
    for suffix, (build, output_section, variant_labels) in variants.items():
        model, _ = load_headless(onnx_path)
        build(model)
        onnx.checker.check_model(model)
        name = f"{stem}-{suffix}"
        data = model.SerializeToString()
        with open(os.path.join(args.out_dir, f"{name}.onnx"), "wb") as f:
            f.write(data)
        with open(os.path.join(args.out_dir, f"{name}.toml"), "w") as f:
            f.write(manifest_text(base, name, data, output_section, variant_labels))
        print(os.path.join(args.out_dir, f"{name}.toml"))


if __name__ == "__main__":
    main()
