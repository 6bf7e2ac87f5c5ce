#!/usr/bin/env python3
"""A rendered sequence with known trajectories, for the tracker and zones (tests/system/scene.rs).

    python3 tools/scene_sequence.py OUT_DIR

writes OUT_DIR/frame_NNN.jpg (192x144, the detector's native scene size; JPEG quality 90) and
OUT_DIR/truth.json: per frame, each object's id, class and exact box. The objects are drawn
with tools/scenes.py's own shapes and paint (what the bundled detector was trained on), on one
fixed background, with mild sensor noise:

- object 1, a square, walks left to right along the bottom, through the zone of
  tests/images/sequence/zones.toml (its right half), and is hidden by a grey post for 4 frames
  on the way;
- object 2, a circle, moves down the left side;
- object 3, a triangle, stands still for the whole sequence (stationary);
- object 4, a square, comes in at frame 12 from the top right and stays.

Every value comes from the seed: the files are the same on every run. Needs numpy and Pillow.
"""
import json
import math
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402 - the detector's own shapes

W, H, FRAMES, SEED = 192, 144, 36, 5001
# (id, class, size, (x, y) at `start`, (dx, dy) per frame, first frame, last frame)
ACTORS = [
    (1, 1, 30, (20.0, 112.0), (4.5, 0.0), 0, 35),
    (2, 0, 30, (30.0, 28.0), (0.0, 1.5), 0, 35),
    (3, 2, 40, (100.0, 40.0), (0.0, 0.0), 0, 35),
    (4, 1, 26, (160.0, 30.0), (-1.0, 0.5), 12, 35),
]
# The post object 1 passes behind: x range, drawn over everything.
POST = (88, 104)


def render(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    c0, c1 = np.array([70, 90, 60], np.float32), np.array([150, 160, 140], np.float32)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    t = (xx / W * 0.7 + yy / H * 0.3)[..., None]
    background = c0 * (1 - t) + c1 * t
    paint = {a[0]: scenes._contrast_color(np.random.default_rng([SEED, a[0]]), background,
                                          (0, 0, W, H)) for a in ACTORS}
    truth = []
    for f in range(FRAMES):
        pil = Image.fromarray(background.astype(np.uint8))
        objects = []
        for oid, cls, size, (x, y), (dx, dy), first, last in ACTORS:
            if not first <= f <= last:
                continue
            cx, cy = x + dx * (f - first), y + dy * (f - first)
            pts = scenes._shape_points(cls, cx, cy, size, 0.0)
            box = scenes._bbox(cls, cx, cy, size, pts)
            # The same paint every frame: a per-object generator, reseeded.
            scenes._draw(np.random.default_rng([SEED, oid]), pil, cls, cx, cy, size, pts,
                         paint[oid], box)
            hidden = oid == 1 and POST[0] - 4 <= box[0] and box[2] <= POST[1] + 4 + 14
            objects.append({"id": oid, "class": cls, "box": [round(v, 2) for v in box],
                            "hidden": bool(hidden)})
        ImageDraw.Draw(pil).rectangle([POST[0], 60, POST[1], H], fill=(128, 128, 128))
        for o in objects:
            # Hidden: the post covers at least half of the object.
            x0, _, x1, _ = o["box"]
            covered = max(0.0, min(x1, POST[1]) - max(x0, POST[0])) / (x1 - x0)
            o["hidden"] = o["id"] == 1 and covered >= 0.5
        arr = np.asarray(pil, dtype=np.float32) + rng.normal(0, 2.0, size=(H, W, 3))
        # JPEG, as a USB camera's MJPEG (and a tenth of a PNG's bytes with sensor noise).
        Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8)).save(
            os.path.join(out, f"frame_{f:03d}.jpg"), quality=90)
        truth.append({"frame": f, "objects": objects})
    with open(os.path.join(out, "truth.json"), "w") as fh:
        json.dump({"size": [W, H], "frames": truth}, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    render(sys.argv[1])
