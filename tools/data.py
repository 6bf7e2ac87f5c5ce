"""Pre-rendered data sets: scenes rendered at native size, then passed through
the device's own geometry step (tools/preprocess.py). We keep the uint8 result
and normalise in the training graph, so training sees bit-for-bit the pixels
the device would produce.

Seeds: each split has its own base seed (train / val / test images); a sample
is rng([seed, index]), so splits never share a scene.
"""
import os
from multiprocessing import Pool

import numpy as np
from PIL import Image

import preprocess as pp
import scenes

SEED_TRAIN_CLS, SEED_VAL_CLS, SEED_TEST_CLS = 1001, 2001, 3001
SEED_TRAIN_DET, SEED_VAL_DET, SEED_TEST_DET = 1002, 2002, 3002
# Calibration inputs for post-training quantization (tools/variants.py): a split of
# their own, so quantization never sees the held-out data it is judged on.
SEED_CAL_CLS, SEED_CAL_DET = 4001, 4002
MAX_OBJ = 5


def _cls_sample(args):
    seed, i = args
    img, cls, _ = scenes.render_classify(seed, i)
    c = pp.CLASSIFIER
    u8, _ = pp.geometry(Image.fromarray(img), c["mode"], c["W"], c["H"])
    return u8, cls


def _det_sample(args):
    seed, i, W, H = args
    img, objs = scenes.render_detect(seed, i)
    d = pp.DETECTOR
    h, w = img.shape[:2]
    u8, _ = pp.geometry(Image.fromarray(img), d["mode"], W, H, d["pad"])
    # Ground truth into model-input pixels with the scale the pixels really got
    # (nw/w, nh/h), so training targets sit exactly on the rendered edges.
    _, nw, nh, left, top = pp.letterbox_params(w, h, W, H)
    boxes = np.zeros((MAX_OBJ, 5), np.float32)
    boxes[:, 0] = -1  # class -1 marks an empty slot
    for k, (c, x0, y0, x1, y1) in enumerate(objs):
        boxes[k] = (c, x0 * nw / w + left, y0 * nh / h + top, x1 * nw / w + left, y1 * nh / h + top)
    return u8, boxes


def build(kind, seed, count, cache_dir, size=None):
    """Render (or load from cache) `count` samples; returns (uint8 images, labels).

    `size`: square model input of a detector other than the shipped one (default
    preprocess.DETECTOR's W x H). The same scenes are letterboxed to it, so a larger
    detector is trained and judged on exactly the scenes the shipped one is."""
    d = pp.DETECTOR
    W, H = (d["W"], d["H"]) if size is None else (size, size)
    if kind == "classify" and size is not None:
        raise ValueError("size applies to detector sets only")
    # The shipped size keeps its old cache name, so existing caches stay valid.
    tag = "" if (W, H) == (d["W"], d["H"]) else f"_{W}x{H}"
    path = os.path.join(cache_dir, f"{kind}_{seed}_{count}_v{scenes.VERSION}{tag}.npz")
    if os.path.exists(path):
        z = np.load(path)
        return z["x"], z["y"]
    if kind == "classify":
        fn, jobs = _cls_sample, [(seed, i) for i in range(count)]
    else:
        fn, jobs = _det_sample, [(seed, i, W, H) for i in range(count)]
    with Pool(os.cpu_count()) as pool:
        out = pool.map(fn, jobs, chunksize=64)
    x = np.stack([o[0] for o in out])
    y = np.stack([np.asarray(o[1]) for o in out])
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(path, x=x, y=y)
    return x, y
