#!/usr/bin/env python3
"""Ground-truth boxes for objects that stand out from their background, as YOLO txt.

    python3 tools/blob_labels.py .cache/thirdparty/shapes-photos/coins.png --class-id 0 \
        > tests/real-photos/coins.txt

Used for the real photos lookout's own detector is measured on (tests/real-photos/): each
pixel is compared with a heavily blurred copy of the image (the local background, so uneven
lighting does not matter), pixels brighter by more than --threshold form the mask, and every
4-connected region of at least --min-area pixels becomes one box. The boxes are checked by eye
on an overlay (--overlay) before they are committed; they are exact to a pixel or two, which
mAP@0.5 does not notice and mAP@0.5:0.95 does a little. Needs numpy and Pillow.
"""
import argparse
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def blobs(gray, threshold, min_area):
    fine = np.asarray(gray.filter(ImageFilter.GaussianBlur(2)), dtype=np.float64)
    background = np.asarray(gray.filter(ImageFilter.GaussianBlur(25)), dtype=np.float64)
    mask = fine - background > threshold
    h, w = mask.shape
    seen = np.zeros_like(mask)
    boxes = []
    for y0 in range(h):
        for x0 in range(w):
            if not mask[y0, x0] or seen[y0, x0]:
                continue
            seen[y0, x0] = True
            stack, ys, xs = [(y0, x0)], [], []
            while stack:
                y, x = stack.pop()
                ys.append(y)
                xs.append(x)
                for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
            if len(ys) >= min_area:
                boxes.append((min(xs), min(ys), max(xs) + 1, max(ys) + 1))
    # Reading order (rows of objects, then left to right) keeps the label file easy to check.
    return sorted(boxes, key=lambda b: (round((b[1] + b[3]) / 2 / (h / 8)), b[0]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("--class-id", type=int, required=True)
    ap.add_argument("--threshold", type=float, default=8.0, help="brightness above local background")
    ap.add_argument("--min-area", type=int, default=300, help="smallest region kept, in pixels")
    ap.add_argument("--overlay", help="write the image with the boxes drawn, to check them")
    args = ap.parse_args()
    img = Image.open(args.image)
    w, h = img.size
    boxes = blobs(img.convert("L"), args.threshold, args.min_area)
    for x0, y0, x1, y1 in boxes:
        print(f"{args.class_id} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")
    if args.overlay:
        rgb = img.convert("RGB")
        draw = ImageDraw.Draw(rgb)
        for b in boxes:
            draw.rectangle(b, outline=(255, 0, 0))
        rgb.save(args.overlay)
    print(f"{len(boxes)} boxes", file=sys.stderr)


if __name__ == "__main__":
    main()
