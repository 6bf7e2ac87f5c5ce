#!/usr/bin/env python3
"""ncnn alone on one prepared input, N times: the ncnn counterpart of
tools/ort_frames.py that scripts/insn-count counts instructions of (--engine ncnn).

    python3 tools/ncnn_frames.py --param M.ncnn.param --bin M.ncnn.bin \
        --manifest models/shapes-detector.toml --image tests/images/detect/scene_0.png \
        --frames 9 [--threads 1]

The .param/.bin are the model converted by pnnx (scripts/insn-count converts it).
ncnn runs as its benchmark (benchncnn) runs a model: the net loaded with ncnn's
default options but for the thread count (packed layouts, Winograd and im2col-GEMM
convolutions, fp16 storage on any aarch64 CPU, fp16 arithmetic where the CPU
reports ASIMDHP: the Cortex-A76, not the A72), a fresh extractor per frame, the
first input fed and the first output extracted. With --manifest and --image the input is the image
read, decoded and pre-processed once, exactly as the manifest says (tools/reference.py's
prepare, as tools/ort_frames.py prepares it); without them, benchncnn's input, every
value 0.01, in the shape --shape gives. Nothing else happens per frame.
--fp32 turns fp16 storage and arithmetic off (the A76 then runs the A72's fp32 kernels);
--pool gives the net benchncnn's allocators (an unlocked pool for blobs, a pool for
workspace, both reusing any block at least as large) instead of a malloc per blob.
Prints one JSON object: the frames run, ncnn's version, its options, whether it sees
fp16 arithmetic (ASIMDHP), the output's shape.
Needs the ncnn wheel (tools/requirements-ncnn-arm.txt) and numpy (and, with --manifest,
Pillow: tools/requirements-ort-arm.txt).
"""
import argparse
import json
import os
import sys

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)

import ncnn  # noqa: E402
import numpy as np  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--param", required=True, help="the model's ncnn .param")
    ap.add_argument("--bin", required=True, help="the model's ncnn .bin")
    ap.add_argument("--manifest", help="model manifest (.toml): the input is --image prepared as it says")
    ap.add_argument("--image", help="the image the input is prepared from (with --manifest)")
    ap.add_argument("--shape", default="1,3,224,224", help="NCHW input shape without --manifest (default 1,3,224,224)")
    ap.add_argument("--frames", type=int, required=True, help="runs of the model")
    ap.add_argument("--threads", type=int, default=1, help="ncnn's threads (opt.num_threads)")
    ap.add_argument("--fp32", action="store_true", help="no fp16 storage or arithmetic")
    ap.add_argument("--pool", action="store_true", help="benchncnn's pool allocators")
    args = ap.parse_args()
    if args.frames < 1:
        raise SystemExit("--frames must be 1 or more")
    if (args.manifest is None) != (args.image is None):
        raise SystemExit("--manifest and --image go together")

    if args.manifest:
        from PIL import Image

        import reference

        m = reference.load_manifest(args.manifest)
        with Image.open(args.image) as img:
            x, _ = reference.prepare(img, m)
        x = np.asarray(x, dtype=np.float32)
    else:
        x = np.full([int(d) for d in args.shape.split(",")], 0.01, dtype=np.float32)
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise SystemExit(f"batch {x.shape[0]}: ncnn runs one image at a time")
        x = x[0]
    x = np.ascontiguousarray(x)

    net = ncnn.Net()
    net.opt.num_threads = args.threads
    if args.fp32:
        net.opt.use_fp16_packed = False
        net.opt.use_fp16_storage = False
        net.opt.use_fp16_arithmetic = False
    pools = []
    if args.pool:
        pools = [ncnn.UnlockedPoolAllocator(), ncnn.PoolAllocator()]
        for a in pools:
            a.set_size_compare_ratio(0.0)
        net.opt.blob_allocator, net.opt.workspace_allocator = pools
    if net.load_param(args.param) != 0:
        raise SystemExit(f"ncnn cannot load {args.param}")
    if net.load_model(args.bin) != 0:
        raise SystemExit(f"ncnn cannot load {args.bin}")
    in_name = net.input_names()[0]
    out_name = net.output_names()[0]
    feed = ncnn.Mat(x)
    out = None
    for _ in range(args.frames):
        ex = net.create_extractor()
        ex.input(in_name, feed)
        ret, out = ex.extract(out_name)
        if ret != 0:
            raise SystemExit(f"ncnn: extracting {out_name} failed ({ret})")
        del ex
    o = net.opt
    print(json.dumps({
        "frames": args.frames,
        "threads": args.threads,
        "ncnn": ncnn.__version__,
        "asimdhp": bool(ncnn.cpu_support_arm_asimdhp()),
        "pool": args.pool,
        "input": [in_name, list(x.shape)],
        "output": [out_name, list(np.array(out).shape)],
        "options": {k: getattr(o, k) for k in (
            "lightmode", "use_packing_layout", "use_winograd_convolution", "use_sgemm_convolution",
            "use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage")
            if hasattr(o, k)},
    }))
    del feed, out
    net.clear()
    for a in pools:
        a.clear()


if __name__ == "__main__":
    main()
