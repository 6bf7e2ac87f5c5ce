#!/usr/bin/env python3
"""The smallest ONNX files that show tract-onnx 0.23.9 failing to load a float16 Gemm.

    python3 tools/f16_gemm_repro.py OUT_DIR        (needs onnx and numpy: the export venv has them)
    lookout inspect OUT_DIR/gemm_f16_bias.onnx     -> "tract: REFUSED: ... tract cannot load the model:
        Translating node #5 "gemm" Gemm ToTypedTranslator: Output mismatch after rewiring expansion
        for output #0: expected 1,3,F16 got 1,3,F32"

Each file: input "x" float32 [1,3,2,2] -> Cast float16 -> Flatten [1,12] -> Gemm(transB=1) with a
float16 weight [3,12] -> Cast float32 -> "y" [1,3] (float32 at the ends because lookout takes an
image tensor). The four files:

    gemm_f16_bias.onnx     Gemm(x, W, C), alpha = beta = 1 (the defaults)   refused
    gemm_f16_alpha.onnx    Gemm(x, W), alpha = 0.5                           refused
    gemm_f16_nobias.onnx   Gemm(x, W)                                        loads
    gemm_f16_beta0.onnx    Gemm(x, W, C), beta = 0                           loads

The cause is tract-onnx's Gemm expansion (src/ops/math/gemm.rs, Gemm::wire): it wires
alpha * (A B) with `tensor0(self.alpha)` and beta * C with `tensor0(self.beta)`, float32 constants
whatever the Gemm's type, and the beta product is wired whenever beta != 0 and C is given, so for
beta = 1 too. tract-core's binary Mul and Add compute in the common super type of their operands
(float16 with float32 -> float32), so the Gemm's output becomes float32 while the inference rules
gave it the type of its inputs (float16), and the translation to a typed model stops. onnxruntime
runs all four files. What would fix it: the constants made in the product's datum type, and the
multiplications skipped for alpha = 1 and beta = 1. Until then scripts/export-speed rewrites such a
Gemm as MatMul + Add before converting to float16 (tools/export_speed.py gemm_to_matmul).
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def write(out, name, gemm_inputs, initializers, **attrs):
    nodes = [helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16),
             helper.make_node("Flatten", ["x16"], ["flat"]),
             helper.make_node("Gemm", ["flat"] + gemm_inputs, ["g"], name="gemm", transB=1, **attrs),
             helper.make_node("Cast", ["g"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    path = os.path.join(out, name + ".onnx")
    onnx.save_model(model, path)
    print(path)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    w = numpy_helper.from_array((np.arange(36, dtype=np.float32).reshape(3, 12) / 64).astype(np.float16), "w")
    c = numpy_helper.from_array(np.ones(3, np.float16), "c")
    write(out, "gemm_f16_bias", ["w", "c"], [w, c])
    write(out, "gemm_f16_alpha", ["w"], [w], alpha=0.5)
    write(out, "gemm_f16_nobias", ["w"], [w])
    write(out, "gemm_f16_beta0", ["w", "c"], [w, c], beta=0.0)


if __name__ == "__main__":
    main()
