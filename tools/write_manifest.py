#!/usr/bin/env python3
"""Write models/<name>.toml for an ONNX file, with its sha256 and size taken
from the file itself so the manifest can never disagree with it.

    python3 tools/write_manifest.py models/shapes-detector.onnx
    python3 tools/write_manifest.py --all     # both shapes models
    python3 tools/write_manifest.py --variant int8-qdq models/variants/shapes-detector-int8-qdq.onnx
    python3 tools/write_manifest.py --variant fp32 models/candidates/shapes-detector-large-fp32.onnx

A variant (a quantized form of a base model, made by tools/variants.py) gets
`<dir>/<base>-<form>.toml`: the base model's body, its own name, file, sha256
and size, a description saying how it is stored, and `quantization = "<form>"`
in `[model]` (base models carry `quantization = "fp32"`).

The manifest text is generated from the templates below (not edited by hand):
lookout parses manifests strictly, so the keys here are exactly its schema.
"""
import argparse
import hashlib
import os

LABELS = ["circle", "square", "triangle"]

COMMON_HEAD = """name = "{name}"
version = "{version}"
description = "{description}"
labels = [{labels}]

[model]
file = "{file}"
sha256 = "{sha256}"
bytes = {bytes}
quantization = "{quantization}"
"""

# The bundled models' version, reported with every result: bump it whenever they are retrained
# (2: trained on renderer version 2, with photo backgrounds and textured objects; 2.1: the
# detector retrained on renderer version 4, with flat, shaded and landscape triangles).
MODEL_VERSION = "2.1.0"

TEMPLATES = {
    "shapes-classifier": dict(
        description="Classifies one centred shape (circle, square or triangle) in the frame; "
                    "a small CNN trained on procedurally rendered scenes (tools/scenes.py).",
        body="""
[input]
name = "images"
shape = [1, 3, 64, 64]
dtype = "f32"
layout = "nchw"

[preprocess]
resize = "center-crop"
interpolation = "bilinear"
pad_value = 114
color = "rgb"
scale = 0.00392156862745098
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
range = [-2.0, 2.0]

[output]
decoder = "classify"
softmax = true
top_k = 3

[thresholds]
score = 0.0
iou = 0.45
max_detections = 100
"""),
    "shapes-detector": dict(
        description="Detects circles, squares and triangles (1-5 per frame) with boxes; "
                    "a small anchor-free CNN trained on procedurally rendered scenes (tools/scenes.py).",
        body="""
[input]
name = "images"
shape = [1, 3, 128, 128]
dtype = "f32"
layout = "nchw"

[preprocess]
resize = "letterbox"
interpolation = "bilinear"
pad_value = 114
color = "rgb"
scale = 0.00392156862745098
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]
range = [0.0, 1.0]

[output]
decoder = "yolov8"
box_units = "pixels"

[thresholds]
score = 0.25
iou = 0.45
max_detections = 100
"""),
}
# The bundled models, which --all (re)writes; candidates are only written beside their files.
BUNDLED = list(TEMPLATES)

# A candidate for boards with more compute (tools/detector.py LARGE, built by
# `tools/build-models --only detector-large` into models/candidates/): the shipped detector's
# manifest except for the input side, so pre-processing, decoder and thresholds are exactly
# the conventions the runtime already reads. Its own version: it is a new model, not 2.1.0.
LARGE_DETECTOR_SIZE = 192
TEMPLATES["shapes-detector-large"] = dict(
    version="1.0.0",
    description="Detects circles, squares and triangles (1-5 per frame) with boxes; "
                "a larger, costlier version of shapes-detector (192x192 input, eight 3x3 convs) "
                "for boards that can afford it, trained on the same rendered scenes (tools/scenes.py).",
    body=TEMPLATES["shapes-detector"]["body"].replace(
        "shape = [1, 3, 128, 128]", f"shape = [1, 3, {LARGE_DETECTOR_SIZE}, {LARGE_DETECTOR_SIZE}]"))


# The large detector's weights exported again at larger input sides (`tools/build-models --only
# detector-large-sides`): the convolutions do not depend on the side, so no training is needed,
# and a larger side keeps small objects in a camera frame large enough to find, at the cost of
# (side/192)^2 the compute. Same conventions otherwise.
LARGE_DETECTOR_SIDES = [320, 448, 640]
for _side in LARGE_DETECTOR_SIDES:
    TEMPLATES[f"shapes-detector-large-{_side}"] = dict(
        version="1.0.0",
        description=f"Detects circles, squares and triangles (1-5 per frame) with boxes; "
                    f"shapes-detector-large's weights at a {_side}x{_side} input, for camera frames "
                    f"whose objects are small: a {LARGE_DETECTOR_SIZE} px input shrinks a 640x480 frame "
                    f"{640 / LARGE_DETECTOR_SIZE:.1f} times, this one {640 / _side:.1f} times, for "
                    f"{(_side / LARGE_DETECTOR_SIZE) ** 2:.1f}x the compute.",
        body=TEMPLATES["shapes-detector"]["body"].replace(
            "shape = [1, 3, 128, 128]", f"shape = [1, 3, {_side}, {_side}]"))


# Sentence appended to the base description, per quantized form (tools/variants.py).
VARIANTS = {
    "fp32": " Weights stored as fp32 (a copy of the base model).",
    "fp16": " Weights stored as fp16, computed in fp32.",
    "int8-weights": " Weights stored as per-channel int8, computed in fp32.",
    "int8-qdq": " Statically quantized to int8 (QDQ: QuantizeLinear/DequantizeLinear around float Conv and Gemm).",
    "int8-qoperator": " Convolutions statically quantized to int8 (QOperator: QLinearConv).",
}


def write(onnx_path, base=None, variant=None, quantization="fp32"):
    """Write the manifest beside `onnx_path` and return its path.

    Without `variant`: models/<name>.toml for base model <name> (the file's stem),
    stored in form `quantization` (the bundled model is the variant tools/model-table
    chose, copied to models/<name>.onnx).
    With `variant` (a key of VARIANTS): <dir>/<base>-<variant>.toml, where `base`
    defaults to the file's stem minus "-<variant>"."""
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    if variant is None:
        name, base, form = stem, stem, quantization
        suffix = VARIANTS[form] if form != "fp32" else ""
    else:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r} (one of {', '.join(VARIANTS)})")
        if base is None:
            if not stem.endswith("-" + variant):
                raise ValueError(f"{onnx_path}: name does not end in -{variant}; pass base=")
            base = stem[:-len(variant) - 1]
        name, form, suffix = f"{base}-{variant}", variant, VARIANTS[variant]
    t = TEMPLATES[base]
    with open(onnx_path, "rb") as f:
        blob = f.read()
    text = COMMON_HEAD.format(name=name, version=t.get("version", MODEL_VERSION), description=t["description"] + suffix,
                              labels=", ".join(f'"{l}"' for l in LABELS),
                              file=os.path.basename(onnx_path),
                              sha256=hashlib.sha256(blob).hexdigest(), bytes=len(blob),
                              quantization=form) + t["body"]
    out = os.path.join(os.path.dirname(onnx_path), name + ".toml")
    with open(out, "w") as f:
        f.write(text)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx", nargs="*")
    ap.add_argument("--all", action="store_true", help="both models in models/")
    ap.add_argument("--variant", choices=list(VARIANTS), help="the files are this quantized form of a base model")
    ap.add_argument("--base", help="base model name of a variant (default: file stem minus -VARIANT)")
    args = ap.parse_args()
    models = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")
    paths = args.onnx or []
    if args.all:
        paths += [os.path.join(models, n + ".onnx") for n in BUNDLED]
    for p in paths:
        print("wrote", os.path.relpath(write(p, base=args.base, variant=args.variant)))


if __name__ == "__main__":
    main()
