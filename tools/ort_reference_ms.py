#!/usr/bin/env python3
"""onnxruntime's one-thread latency on the two reference networks lookout scales board
estimates by (models/reference/), as docs/choosing-a-model.md quotes it.

    python3 tools/ort_reference_ms.py      # median ms of 30 runs after 5 warm-up runs, each

Needs tools/requirements-ref.txt. This VM swings up to 2x between runs: compare the ratio.
"""
import os
import statistics
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

for name in ["mobilenetv2-224", "resnet18-224"]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(ROOT, "models", "reference", f"{name}.onnx"), opts,
                                providers=["CPUExecutionProvider"])
    first = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in first.shape]
    feed = {first.name: np.zeros(shape, np.float32)}
    for _ in range(5):
        sess.run(None, feed)
    times = []
    for _ in range(30):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - start) * 1000)
    print(f"{name}: {statistics.median(times):.2f} ms (onnxruntime {ort.__version__}, one thread)")
