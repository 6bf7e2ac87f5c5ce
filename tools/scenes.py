#!/usr/bin/env python3
"""Procedural scenes of simple shapes with exact ground truth.

Every image is a pure function of (kind, seed, index): the generator is
seeded with ``np.random.default_rng([seed, index])`` so any sample can be
re-rendered on its own, and training / validation / test sets are kept apart
simply by using different ``seed`` values.

Ground-truth boxes are ``(class_id, x0, y0, x1, y1)`` in pixels of the
native-size image, computed from the same geometry that is drawn, so they are
exact (the final blur only softens edges by a fraction of a pixel).

    python3 tools/scenes.py --kind detect --seed 7 --count 4 --out /tmp/scenes

writes a labelled set in the layouts `lookout eval` reads: detect -> `scene_<i>.png` with
YOLO txt `scene_<i>.txt` beside it and `labels.txt`; classify -> `<label>/<i>.png`.
The held-out sets behind the numbers in models/README.md are seed 2002 (detect, 500)
and seed 2001 (classify, 2000). `--wide 640x480` renders detection scenes as wide camera views
instead, the objects small in the frame (see render_detect). `--shift night|fog` renders the
same scenes as a camera would see them at dusk or in fog (SHIFTS): the deployment conditions
that drift monitoring and retraining (tools/retrain) are shown on.
"""
import argparse
import io
import math
import os
import zipfile

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

import thirdparty

CLASSES = ["circle", "square", "triangle"]
# Bumped whenever the renderer changes what a (seed, index) draws, so caches of rendered sets
# (tools/data.py, tools/model-table) can never serve images of an older renderer.
VERSION = 4

# Native sizes the device might hand us; the classifier set includes
# non-square ones so the centre crop actually crops.
CLASSIFY_SIZES = [(80, 80), (96, 96), (112, 84), (120, 90), (128, 96), (100, 120), (160, 120), (144, 144)]
DETECT_SIZES = [(160, 120), (192, 144), (128, 128), (200, 120), (144, 176)]


# Real photographs used as backgrounds and object textures, so the models meet camera-like
# texture in training. They come from the scikit-image wheel that scripts/fetch-thirdparty
# downloads. Left out on purpose: photos showing round or square things that would be
# unlabelled objects here (coffee cup, retina, moon, galaxies, clock, logo, chessboard) and
# coins.png, which the detector is evaluated on (tests/real-photos/).
TEXTURE_PHOTOS = ["astronaut.png", "brick.png", "camera.png", "chelsea.png", "grass.png", "gravel.png",
                  "ihc.png", "motorcycle_left.png", "motorcycle_right.png", "page.png", "rocket.jpg", "text.png"]
_WHEEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      ".cache", "thirdparty", "wheels", thirdparty.SKIMAGE_WHEEL)
_photos = None


def _photo(rng):
    """One texture photo as float32 HxWx3 (loaded once per process)."""
    global _photos
    if _photos is None:
        if not os.path.exists(_WHEEL):
            raise SystemExit(f"{_WHEEL} is missing: run scripts/fetch-thirdparty first")
        with zipfile.ZipFile(_WHEEL) as z:
            _photos = [np.asarray(Image.open(io.BytesIO(z.read(f"skimage/data/{n}"))).convert("RGB"),
                                  dtype=np.float32) for n in TEXTURE_PHOTOS]
    return _photos[int(rng.integers(len(_photos)))]


def _photo_crop(rng, w, h):
    """A random crop of a texture photo, resized to w x h, sometimes mirrored."""
    src = _photo(rng)
    sh, sw = src.shape[:2]
    scale = rng.uniform(0.25, 1.0)
    cw = max(8, min(sw, int(round(scale * min(sw, sh * w / h)))))
    ch = max(8, min(sh, int(round(cw * h / w))))
    x0, y0 = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
    crop = Image.fromarray(src[y0:y0 + ch, x0:x0 + cw].astype(np.uint8)).resize((w, h), Image.BILINEAR)
    arr = np.asarray(crop, dtype=np.float32)
    return arr[:, ::-1] if rng.uniform() < 0.5 else arr


def _rand_color(rng):
    return np.array(rng.integers(0, 256, size=3), dtype=np.float32)


def _background(rng, w, h):
    """A float32 HxWx3 background: flat, gradient, noise, stripes or checker."""
    kind = rng.choice(["flat", "gradient", "noise", "stripes", "checker", "photo"],
                      p=[0.15, 0.15, 0.15, 0.1, 0.1, 0.35])
    c0, c1 = _rand_color(rng), _rand_color(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "flat":
        img = np.broadcast_to(c0, (h, w, 3)).copy()
    elif kind == "gradient":
        ang = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(ang) + yy * math.sin(ang)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    elif kind == "noise":
        # Low-frequency blotches: upsampled coarse noise looks like clutter, not sensor noise.
        cw, ch = int(rng.integers(3, 12)), int(rng.integers(3, 12))
        coarse = rng.uniform(0, 255, size=(ch, cw, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), dtype=np.float32)
        img = 0.5 * img + 0.5 * c0
    elif kind == "stripes":
        ang = rng.uniform(0, math.pi)
        period = rng.uniform(4, 24)
        t = xx * math.cos(ang) + yy * math.sin(ang)
        m = ((t / period) % 1.0 < 0.5).astype(np.float32)[..., None]
        img = c0 * m + c1 * (1 - m)
    elif kind == "checker":
        cell = rng.uniform(4, 20)
        m = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)[..., None]
        img = c0 * m + c1 * (1 - m)
    else:
        img = _photo_crop(rng, w, h)
    # Textured backgrounds are toned down towards their mean so that objects
    # stay the most salient thing, as on a real (not adversarial) camera frame.
    if kind in ("stripes", "checker", "photo"):
        mix = rng.uniform(0.3, 0.8)
        img = img * mix + img.mean(axis=(0, 1)) * (1 - mix)
    return img.astype(np.float32)


def _triangle_form(rng):
    """Real triangles are rarely equilateral: pyramids and roofs are wide and flat, warning
    signs near equilateral, give-way signs upside down. Height over base, apex offset
    (fraction of the half-base) and whether it points down."""
    return {"aspect": float(math.exp(rng.uniform(math.log(0.4), math.log(1.0)))),
            "skew": float(rng.uniform(-0.2, 0.2)), "flip": bool(rng.uniform() < 0.08)}


def _shape_points(cls, cx, cy, size, rot, form=None):
    """Polygon points (or None for a circle) for an object of ``size`` px across
    (a triangle's base)."""
    if cls == 0:
        return None
    if cls == 1:
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        half = size / 2
        c, s = math.cos(rot), math.sin(rot)
        return [(cx + half * (x * c - y * s), cy + half * (x * s + y * c)) for x, y in corners]
    form = form or {"aspect": math.sqrt(3) / 2, "skew": 0.0, "flip": False}
    hh = size * form["aspect"] / 2
    corners = [(form["skew"] * size / 2, -hh), (-size / 2, hh), (size / 2, hh)]
    if form["flip"]:
        rot += math.pi
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]


def _bbox(cls, cx, cy, size, pts):
    if pts is None:
        r = size / 2
        return cx - r, cy - r, cx + r, cy + r
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return min(xs), min(ys), max(xs), max(ys)


def _contrast_color(rng, bg, box):
    """Pick an object colour that differs clearly from the background under it,
    otherwise the label would be unlearnable noise."""
    x0, y0, x1, y1 = [int(round(v)) for v in box]
    h, w = bg.shape[:2]
    patch = bg[max(y0, 0):max(min(y1, h), 1), max(x0, 0):max(min(x1, w), 1)]
    ref = patch.reshape(-1, 3).mean(axis=0) if patch.size else bg.mean(axis=(0, 1))
    best, best_d = None, -1.0
    for _ in range(12):
        col = _rand_color(rng)
        d = float(np.abs(col - ref).sum())
        if d > best_d:
            best, best_d = col, d
        if d > 180:
            break
    return tuple(int(v) for v in best)


def _fill(rng, w, h, color, box):
    """What an object is painted with, as a float32 HxWx3 image around `color`: flat paint,
    a shading gradient, a photo texture (printed, embossed or natural surfaces), or radial
    shading (a disc lit from one side, a coin, a ball)."""
    kind = rng.choice(["flat", "gradient", "texture", "radial", "lattice"], p=[0.36, 0.2, 0.25, 0.12, 0.07])
    col = np.asarray(color, dtype=np.float32)
    if kind == "flat":
        return np.broadcast_to(col, (h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x0, y0, x1, y1 = box
    if kind == "lattice":
        # Glazing, mesh, tiles: a bright pane crossed by a grid of darker bars.
        period = rng.uniform(3, 9)
        ang = rng.uniform(0, math.pi / 2)
        u = (xx * math.cos(ang) + yy * math.sin(ang)) / period % 1.0
        v = (-xx * math.sin(ang) + yy * math.cos(ang)) / period % 1.0
        bars = ((u < 0.18) | (v < 0.18)).astype(np.float32)[..., None]
        return col * (1 - bars * rng.uniform(0.3, 0.7))
    if kind == "gradient":
        ang = rng.uniform(0, 2 * math.pi)
        t = ((xx - x0) * math.cos(ang) + (yy - y0) * math.sin(ang)) / max(x1 - x0, y1 - y0, 1.0)
        return col * (1 + rng.uniform(-0.5, 0.5) * (t[..., None] - 0.5))
    if kind == "texture":
        tex = _photo_crop(rng, w, h)
        tex = (tex - tex.mean(axis=(0, 1))) * rng.uniform(0.3, 1.0)
        return col + tex
    cx, cy = (x0 + x1) / 2 + rng.uniform(-0.3, 0.3) * (x1 - x0), (y0 + y1) / 2 + rng.uniform(-0.3, 0.3) * (y1 - y0)
    r = np.hypot(xx - cx, yy - cy) / max(x1 - x0, y1 - y0, 1.0)
    return col * (1.25 - rng.uniform(0.3, 0.8) * r[..., None])


def _draw(rng, pil, cls, cx, cy, size, pts, color, box):
    """Paints one object onto `pil` through a mask of its exact shape; sometimes with a rim."""
    w, h = pil.size
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    r = size / 2
    if pts is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(pts, fill=255)
    fill_arr = _fill(rng, w, h, color, box)
    fill = Image.fromarray(np.clip(fill_arr, 0, 255).astype(np.uint8))
    pil.paste(fill, (0, 0), mask)
    if pts is not None and len(pts) == 3 and rng.uniform() < 0.35:
        # A pyramid or a tent seen off-axis shows two faces in different light: the
        # triangle is split from its apex to a point on its base, one side darker.
        t = rng.uniform(0.2, 0.8)
        split = (pts[1][0] + t * (pts[2][0] - pts[1][0]), pts[1][1] + t * (pts[2][1] - pts[1][1]))
        face = Image.new("L", (w, h), 0)
        ImageDraw.Draw(face).polygon([pts[0], split, pts[2] if rng.uniform() < 0.5 else pts[1]], fill=255)
        dark = Image.fromarray(np.clip(fill_arr * rng.uniform(0.55, 0.85), 0, 255).astype(np.uint8))
        pil.paste(dark, (0, 0), face)
    if rng.uniform() < 0.15:
        rim = tuple(int(v * rng.uniform(0.4, 0.8)) for v in color)
        width = int(rng.integers(1, 4))
        draw = ImageDraw.Draw(pil)
        if pts is None:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=rim, width=width)
        else:
            draw.polygon(pts, outline=rim, width=width)


def _finish(rng, img):
    """Camera effects: lighting field, contrast, blur, sensor noise, quantisation."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    t = (xx * math.cos(ang) + yy * math.sin(ang)) / max(w, h)
    light = rng.uniform(0.6, 1.25) + rng.uniform(-0.25, 0.25) * t
    contrast = rng.uniform(0.7, 1.2)
    img = (img - 128) * contrast + 128
    img = img * light[..., None]
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    radius = rng.uniform(0.0, 1.0)
    if radius > 0.2:
        pil = pil.filter(ImageFilter.GaussianBlur(radius))
    if rng.uniform() < 0.15:
        # Monochrome cameras and night modes: the shape, not the colour, must decide.
        pil = pil.convert("L").convert("RGB")
    arr = np.asarray(pil, dtype=np.float32)
    arr = arr + rng.normal(0, rng.uniform(0, 8), size=arr.shape)
    out = np.clip(np.round(arr), 0, 255).astype(np.uint8)
    if rng.uniform() < 0.3:
        # MJPEG from a USB camera: block artefacts at the quality cheap webcams use.
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, "JPEG", quality=int(rng.integers(30, 90)))
        out = np.asarray(Image.open(buf).convert("RGB"))
    return out


def _distractors(rng, draw, w, h):
    # Thin lines are edges without being objects; they teach the detector that
    # an edge alone is not a square.
    for _ in range(int(rng.integers(1, 4))):
        p = [float(rng.uniform(0, w)), float(rng.uniform(0, h)), float(rng.uniform(0, w)), float(rng.uniform(0, h))]
        draw.line(p, fill=tuple(int(v) for v in _rand_color(rng)), width=int(rng.integers(1, 3)))


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def render_classify(seed, index, size=None, cls=None):
    """One roughly centred object. Returns (uint8 HxWx3 array, class_id, box)."""
    rng = np.random.default_rng([seed, index])
    w, h = size or CLASSIFY_SIZES[int(rng.integers(len(CLASSIFY_SIZES)))]
    cls = int(rng.integers(3)) if cls is None else cls
    m = min(w, h)
    obj = rng.uniform(0.35, 0.7) * m
    cx = w / 2 + rng.uniform(-0.1, 0.1) * m
    cy = h / 2 + rng.uniform(-0.1, 0.1) * m
    rot = math.radians(rng.uniform(-15, 15))
    bg = _background(rng, w, h)
    pts = _shape_points(cls, cx, cy, obj, rot)
    box = _bbox(cls, cx, cy, obj, pts)
    color = _contrast_color(rng, bg, box)
    pil = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    if rng.uniform() < 0.3:
        _distractors(rng, ImageDraw.Draw(pil), w, h)
    _draw(rng, pil, cls, cx, cy, obj, pts, color, box)
    return _finish(rng, np.asarray(pil, dtype=np.float32)), cls, box


def _landscape(rng, w, h):
    """Sky over ground with one large triangle standing on the horizon, its foot sunk into
    the ground: a pyramid, a roof or a tent, often in colours close to the ground so that
    only the slopes against the sky give it away. Returns (background with the triangle
    drawn, its class-and-box, the horizon row)."""
    horizon = rng.uniform(0.45, 0.85) * h
    sky_top, sky_low = _rand_color(rng), _rand_color(rng)
    if rng.uniform() < 0.6:  # a real sky: pale, bluish or grey
        sky_low = np.array([rng.uniform(150, 235)] * 3, np.float32) + rng.uniform(-20, 20, 3)
        sky_top = sky_low * rng.uniform(0.6, 1.0) + np.array([0, 10, 40], np.float32) * rng.uniform(0, 1)
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
    t = np.clip(yy / max(horizon, 1.0), 0, 1)[..., None]
    img = sky_top * (1 - t) + sky_low * t
    ground_col = _rand_color(rng)
    tri_col = np.clip(ground_col * rng.uniform(0.8, 1.2) + rng.uniform(-25, 25, 3), 0, 255) \
        if rng.uniform() < 0.6 else _rand_color(rng)
    ground = _fill(rng, w, h, ground_col, (0, horizon, w, h))
    base = w * rng.uniform(0.3, 0.85)
    form = {"aspect": float(math.exp(rng.uniform(math.log(0.3), math.log(0.8)))),
            "skew": float(rng.uniform(-0.15, 0.15)), "flip": False}
    height = base * form["aspect"]
    if height > horizon - 2:
        height = horizon - 2
        form["aspect"] = height / base
    sink = rng.uniform(0, 0.15) * height  # how far the foot is buried below the horizon
    cx = rng.uniform(base / 2, w - base / 2)
    cy = horizon + sink - height / 2
    pts = _shape_points(2, cx, cy, base, 0.0, form)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    _draw(rng, pil, 2, cx, cy, base, pts, tuple(int(v) for v in tri_col), _bbox(2, cx, cy, base, pts))
    arr = np.asarray(pil, dtype=np.float32).copy()
    arr[int(math.ceil(horizon)):] = ground[int(math.ceil(horizon)):]
    # The visible part ends at the horizon: the box spans the slopes' width there.
    apex, left, right = pts
    f = (horizon - apex[1]) / max(left[1] - apex[1], 1e-6)
    x0 = apex[0] + f * (left[0] - apex[0])
    x1 = apex[0] + f * (right[0] - apex[0])
    return arr, (2, float(x0), float(apex[1]), float(x1), float(math.ceil(horizon))), horizon


def render_detect(seed, index, size=None, wide=None):
    """1-5 objects. Returns (uint8 HxWx3 array, [(class_id, x0, y0, x1, y1), ...]).

    `wide` = (w, h) renders a wide view instead: a frame of that size (a camera's, say
    640x480) holding objects of the pixel sizes a native render has, so they are small in the
    frame, as far-off things are to a camera. A model that shrinks such a frame to its input
    side shrinks the objects with it; this is the set that shows what a larger input buys.
    Wide views have no landscape triangle (one spanning a camera frame is larger than anything
    the models were trained on)."""
    rng = np.random.default_rng([seed, index])
    if wide is not None:
        w, h = wide
        # Objects sized as in a native render of a random native size.
        m = min(DETECT_SIZES[int(rng.integers(len(DETECT_SIZES)))])
    else:
        w, h = size or DETECT_SIZES[int(rng.integers(len(DETECT_SIZES)))]
        m = min(w, h)
    objects = []
    if wide is None and rng.uniform() < 0.25:
        bg, tri, _ = _landscape(rng, w, h)
        objects.append(tri)
    else:
        bg = _background(rng, w, h)
    pil = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    if rng.uniform() < 0.5:
        _distractors(rng, ImageDraw.Draw(pil), w, h)
    want = len(objects) + int(rng.integers(0 if objects else 1, 6 - len(objects)))
    for _ in range(want * 10):
        if len(objects) == want:
            break
        cls = int(rng.integers(3))
        form = _triangle_form(rng) if cls == 2 else None
        # Triangles are measured by their base; wide flat ones may span half the frame.
        obj = rng.uniform(0.12, 0.38) * m if cls != 2 else rng.uniform(0.14, 0.6) * m
        rot = math.radians(rng.uniform(-15, 15))
        cx, cy = rng.uniform(obj * 0.55, w - obj * 0.55), rng.uniform(obj * 0.55, h - obj * 0.55)
        pts = _shape_points(cls, cx, cy, obj, rot, form)
        box = _bbox(cls, cx, cy, obj, pts)
        # Objects stay fully inside the frame and do not overlap: occlusion would
        # make the "exact" box ambiguous, which is not what these models are for.
        if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
            continue
        if any(_iou(box, o[1:]) > 0.0 for o in objects):
            continue
        _draw(rng, pil, cls, cx, cy, obj, pts, _contrast_color(rng, bg, box), box)
        objects.append((cls,) + tuple(float(v) for v in box))
    return _finish(rng, np.asarray(pil, dtype=np.float32)), objects


# Conditions a deployed camera may meet that the renders do not cover, applied after rendering
# (`--shift`): what drift monitoring should notice and retraining (tools/retrain) should fix.
SHIFTS = {
    # Dusk under street lights: a twentieth of the light, bluish, with the sensor noise a camera
    # raises its gain into. The shipped detector loses about 30 points of mAP@0.5 here.
    "night": dict(gain=(0.14, 0.16, 0.24), lift=0.0, noise=4.0),
    # Thick fog or a misted lens: contrast crushed towards a bright grey.
    "fog": dict(gain=(0.28, 0.28, 0.28), lift=175.0, noise=3.0),
}


def shift(img, name, rng):
    """`img` (HxWx3 uint8) as seen under the condition `name` of SHIFTS, noise drawn from `rng`."""
    s = SHIFTS[name]
    a = img.astype(np.float32) * np.asarray(s["gain"], np.float32) + s["lift"]
    a += rng.normal(0.0, s["noise"], a.shape)
    return np.clip(a, 0, 255).round().astype(np.uint8)


def yolo_lines(objects, w, h):
    """Ground truth as YOLO txt lines: class cx cy w h, normalised to the image."""
    out = []
    for c, x0, y0, x1, y1 in objects:
        out.append(f"{c} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")
    return out


def _write_sample(job):
    kind, seed, i, out, wide, shifted = job
    # The shift's noise is a function of the scene too, apart from the scene's own draws.
    rng = np.random.default_rng([seed, i, 7])
    if kind == "classify":
        img, cls, _ = render_classify(seed, i)
        if shifted:
            img = shift(img, shifted, rng)
        Image.fromarray(img).save(os.path.join(out, CLASSES[cls], f"{i}.png"))
    else:
        img, objs = render_detect(seed, i, wide=wide)
        if shifted:
            img = shift(img, shifted, rng)
        Image.fromarray(img).save(os.path.join(out, f"scene_{i}.png"))
        with open(os.path.join(out, f"scene_{i}.txt"), "w") as f:
            f.write("\n".join(yolo_lines(objs, img.shape[1], img.shape[0])) + "\n")


def write_set(kind, seed, count, out, wide=None, shifted=None):
    """Render a labelled set to `out` (see the module docstring for the layouts); `wide`:
    detection scenes as wide views of that (w, h) (see render_detect); `shifted`: under a
    condition of SHIFTS."""
    from multiprocessing import Pool

    if kind == "classify":
        for c in CLASSES:
            os.makedirs(os.path.join(out, c), exist_ok=True)
    else:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "labels.txt"), "w") as f:
            f.write("\n".join(CLASSES) + "\n")
    with Pool(os.cpu_count()) as pool:
        pool.map(_write_sample, [(kind, seed, i, out, wide, shifted) for i in range(count)], chunksize=32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=["classify", "detect"], default="detect")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--out", required=True)
    ap.add_argument("--wide", metavar="WxH", help="detect only: wide views of this frame size, e.g. 640x480, "
                    "with objects as small in them as a camera sees far-off things")
    ap.add_argument("--shift", choices=sorted(SHIFTS), help="render as seen under this condition "
                    "(night: dusk light, bluish, noisy; fog: contrast crushed to grey), for drift and retraining")
    args = ap.parse_args()
    wide = None
    if args.wide:
        try:
            wide = tuple(int(v) for v in args.wide.lower().split("x"))
        except ValueError:
            wide = ()
        if len(wide) != 2 or min(wide) < max(max(s) for s in DETECT_SIZES):
            ap.error(f"--wide {args.wide}: want WxH, each side at least {max(max(s) for s in DETECT_SIZES)}")
        if args.kind != "detect":
            ap.error("--wide is for --kind detect")
    write_set(args.kind, args.seed, args.count, args.out, wide, args.shift)


if __name__ == "__main__":
    main()
