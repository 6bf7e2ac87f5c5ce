#!/usr/bin/env python3
"""COCO mAP of detections by pycocotools, the reference implementation every paper uses.

    python3 tools/coco_eval.py DATA_DIR DETECTIONS.jsonl

DATA_DIR is a YOLO txt set as `lookout eval` reads it (images with `<stem>.txt` beside them,
or `images/` + `labels/`); DETECTIONS.jsonl holds one lookout record per image (`lookout run
--score 0.001 --sink file:…`), or the reference pipeline's output (tools/reference.py), matched
to images by file name, boxes in image pixels. Prints one JSON object:

    {"map50": …, "map75": …, "map50_95": …, "images": n, "objects": m}

The tests compare `lookout eval` against it, so lookout's own mAP code is held to pycocotools'
numbers, not to a re-derivation of the same rules. Needs tools/requirements-ref.txt.
"""
import argparse
import contextlib
import io
import json
import os

from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp")


def yolo_set(data_dir):
    """[(file name, width, height, [(class, x0, y0, x1, y1)])] in file-name order."""
    image_dir, label_dir = data_dir, data_dir
    if os.path.isdir(os.path.join(data_dir, "images")):
        image_dir, label_dir = os.path.join(data_dir, "images"), os.path.join(data_dir, "labels")
    out = []
    for name in sorted(f for f in os.listdir(image_dir) if f.lower().endswith(IMAGE_EXT)):
        with Image.open(os.path.join(image_dir, name)) as img:
            w, h = img.size
        objects = []
        label = os.path.join(label_dir, os.path.splitext(name)[0] + ".txt")
        if os.path.exists(label):
            for line in open(label):
                f = line.split()
                if f:
                    c, cx, cy, bw, bh = int(f[0]), *map(float, f[1:])
                    objects.append((c, (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
        out.append((name, w, h, objects))
    return out


def evaluate(images, detections, num_classes):
    """images as from yolo_set; detections {file name: [(class, score, x0, y0, x1, y1)]}.
    Category ids are class + 1 (COCO ids start at 1)."""
    gt = COCO()
    anns = []
    for i, (_, _, _, objects) in enumerate(images):
        for c, x0, y0, x1, y1 in objects:
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=c + 1, iscrowd=0,
                             bbox=[x0, y0, x1 - x0, y1 - y0], area=(x1 - x0) * (y1 - y0)))
    gt.dataset = dict(images=[dict(id=i + 1, width=w, height=h) for i, (_, w, h, _) in enumerate(images)],
                      annotations=anns, categories=[dict(id=c + 1) for c in range(num_classes)])
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        results = [dict(image_id=i + 1, category_id=c + 1, score=s, bbox=[x0, y0, x1 - x0, y1 - y0])
                   for i, (name, _, _, _) in enumerate(images)
                   for c, s, x0, y0, x1, y1 in detections.get(name, [])]
        if not results:
            return dict(map50=0.0, map75=0.0, map50_95=0.0)
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # stats: [AP@.5:.95, AP@.5, AP@.75, ...] for area=all, maxDets=100; -1 when undefined.
    return dict(map50_95=max(0.0, float(ev.stats[0])), map50=max(0.0, float(ev.stats[1])),
                map75=max(0.0, float(ev.stats[2])))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="YOLO txt set")
    ap.add_argument("detections", help="JSON Lines, one record per image")
    ap.add_argument("--classes", type=int, help="number of classes (default: lines of labels.txt)")
    args = ap.parse_args()
    classes = args.classes
    if classes is None:
        with open(os.path.join(args.data, "labels.txt")) as f:
            classes = sum(1 for line in f if line.strip())
    dets = {}
    with open(args.detections) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                dets[r["frame"]] = [(d["label_id"], d["score"], *d["box"]) for d in r.get("detections", [])]
    images = yolo_set(args.data)
    out = evaluate(images, dets, classes)
    out.update(images=len(images), objects=sum(len(o) for *_, o in images))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
