#!/usr/bin/env python3
"""The straightforward Python pipeline lookout is compared with: Pillow and numpy
pre-processing, onnxruntime inference, numpy decoding, one JSON line per frame.

    python3 tools/python_pipeline.py --manifest models/shapes-detector.toml \
        --source tests/images/detect --frames 500 [--threads 1] [--records]

What a developer would write first with the usual tools, and what `lookout bench` is
measured against on the same images and thread count (docs/choosing-a-model.md, "Speed, measured"). Like `lookout
bench`, it reads and decodes the images once, then cycles over them in memory, so the
figures are the pipeline's and not the disk's. Each frame: letterbox resize and
normalisation exactly as the manifest says (tools/preprocess.py, the reference the
Rust pre-processing is tested against), one onnxruntime run (graph optimisation on,
as a deployment would run it), decoding with NMS (tools/reference.py), and the record
serialised to JSON and dropped.

Prints one JSON object: frames, fps over the wall-clock time, and the median of each
stage in ms. With --records, prints the records of the first pass over the images
instead, one per line, so a test can check that it does the same work lookout does.

With --decode-each-frame, every frame's image is read and decoded again in the loop
(frame i is the folder's image i, starting over at its end), as `lookout run` on a
folder does, and nothing is read before it: scripts/insn-count counts this pipeline's
instructions per frame that way (--warmup 0 --threads 1, at 1 and at 1+K frames)
against `lookout run`'s. The JSON then has a "read" stage too.
Needs tools/requirements-ref.txt.
"""
import argparse
import json
import os
import sys
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from PIL import Image  # noqa: E402

import reference  # noqa: E402


def session(m, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(os.path.join(m["_dir"], m["model"]["file"]), opts,
                                providers=["CPUExecutionProvider"])


def process(sess, m, name, img):
    """One frame -> (record, stage times in ms)."""
    t0 = time.perf_counter()
    w, h = img.size
    x, t = reference.prepare(img, m)
    t1 = time.perf_counter()
    outs = sess.run(None, {m["input"]["name"]: x})
    t2 = time.perf_counter()
    record = {"frame": name}
    decoder = m["output"]["decoder"]
    if decoder == "classify":
        record["classes"] = reference.decode_classify(outs[0], m)
    elif decoder == "ssd":
        by_name = dict(zip((o.name for o in sess.get_outputs()), outs))
        record["detections"] = reference.decode_detect(by_name, m, t, w, h)
    else:
        record["detections"] = reference.decode_detect(outs[0], m, t, w, h)
    t3 = time.perf_counter()
    line = json.dumps(record)
    t4 = time.perf_counter()
    ms = [(b - a) * 1000.0 for a, b in ((t0, t1), (t1, t2), (t2, t3), (t3, t4))]
    return record, line, ms


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--source", required=True, help="an image folder (sorted by name)")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--records", action="store_true")
    ap.add_argument("--decode-each-frame", action="store_true",
                    help="read and decode each frame's image in the loop, as `lookout run` does, "
                         "instead of all images once before it")
    args = ap.parse_args()

    m = reference.load_manifest(args.manifest)
    paths = reference.expand([args.source])
    if not paths:
        raise SystemExit(f"{args.source}: no images")
    if args.decode_each_frame and not args.records:
        each_frame(m, paths, args)
        return
    images = []
    for path in paths[:16]:
        with Image.open(path) as img:
            images.append((os.path.basename(path), img.convert("RGB")))
    sess = session(m, args.threads)
    if args.records:
        for name, img in images:
            print(process(sess, m, name, img)[1])
        return
    for i in range(args.warmup):
        process(sess, m, *images[i % len(images)])
    stages = []
    started = time.perf_counter()
    for i in range(args.frames):
        stages.append(process(sess, m, *images[i % len(images)])[2])
    report(m, args, time.perf_counter() - started, stages, ["pre", "infer", "post", "emit"])


def report(m, args, wall, stages, names):
    """Prints the run's JSON object: frames, fps and each stage's median (ms) in `names`'
    order, then the whole pipeline's."""
    s = np.asarray(stages)
    median_ms = {name: float(np.median(s[:, i])) for i, name in enumerate(names)}
    median_ms["pipeline"] = float(np.median(s.sum(axis=1)))
    print(json.dumps({
        "model": f"{m['name']}@{m['version']}",
        "frames": args.frames,
        "threads": args.threads,
        "onnxruntime": ort.__version__,
        "fps": args.frames / wall,
        "wall_seconds": wall,
        "median_ms": median_ms,
    }))


def each_frame(m, paths, args):
    """--decode-each-frame: frame i reads and decodes paths[i % len(paths)], then
    processes it; no image is read before the loop."""
    sess = session(m, args.threads)

    def frame(i):
        path = paths[i % len(paths)]
        t0 = time.perf_counter()
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        read_ms = (time.perf_counter() - t0) * 1000.0
        return [read_ms] + process(sess, m, os.path.basename(path), rgb)[2]

    for i in range(args.warmup):
        frame(i)
    stages = []
    started = time.perf_counter()
    for i in range(args.frames):
        stages.append(frame(i))
    report(m, args, time.perf_counter() - started, stages, ["read", "pre", "infer", "post", "emit"])


if __name__ == "__main__":
    main()
