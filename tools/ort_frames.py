#!/usr/bin/env python3
"""onnxruntime alone on one prepared input, N times: the counterpart of
`lookout bench --bare-only` that scripts/insn-count counts instructions of.

    python3 tools/ort_frames.py --manifest models/shapes-detector.toml \
        --image tests/images/detect/scene_0.png --frames 9 [--threads 1]

The image is read, decoded and pre-processed once, exactly as the manifest says
(tools/reference.py's prepare, the reference lookout's pre-processing is tested
against); then the session tools/python_pipeline.py makes (graph optimisation as
it sets it, intra-op threads --threads, one inter-op thread, the CPU execution
provider) runs on that input --frames times, and nothing else happens per frame.
Prints one JSON object: the frames run, onnxruntime's version, the outputs' shapes.
Needs tools/requirements-ref.txt (or, on aarch64 under qemu,
tools/requirements-ort-arm.txt).
"""
import argparse
import json
import os
import sys

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)

import onnxruntime as ort  # noqa: E402
from PIL import Image  # noqa: E402

import python_pipeline  # noqa: E402
import reference  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True, help="model manifest (.toml)")
    ap.add_argument("--image", required=True, help="the image the input is prepared from")
    ap.add_argument("--frames", type=int, required=True, help="runs of the model")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = ap.parse_args()
    if args.frames < 1:
        raise SystemExit("--frames must be 1 or more")

    m = reference.load_manifest(args.manifest)
    with Image.open(args.image) as img:
        x, _ = reference.prepare(img, m)
    sess = python_pipeline.session(m, args.threads)
    feed = {m["input"]["name"]: x}
    outs = None
    for _ in range(args.frames):
        outs = sess.run(None, feed)
    print(json.dumps({
        "model": f"{m['name']}@{m['version']}",
        "frames": args.frames,
        "threads": args.threads,
        "onnxruntime": ort.__version__,
        "outputs": [list(o.shape) for o in outs],
    }))


if __name__ == "__main__":
    main()
