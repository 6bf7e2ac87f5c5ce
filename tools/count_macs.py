#!/usr/bin/env python3
"""Multiply-accumulates of one inference of float ONNX models, counted from the graph alone.

    python3 tools/count_macs.py MODEL.onnx...   -> one line per file: "<macs> <parameters> <file>"

Counts what "MACs" means for published models: every Conv (output elements x input channels
per group x kernel surface) and Gemm/MatMul (output elements x inner dimension); biases,
pooling and activations are not counted. Parameters are the weights and biases of those
same operators. Shapes come from ONNX shape inference. It is the
independent check of `lookout inspect`'s compute line, which counts on tract's graph instead
(tests/arch/models.rs).
"""
import math
import sys

import onnx
from onnx import shape_inference


def count(path):
    model = shape_inference.infer_shapes(onnx.load(path))
    graph = model.graph
    shapes = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        shapes[value.name] = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    producers = {out: node for node in graph.node for out in node.output}

    def shape_of(name):
        # Weights stored as int8 reach the operator through DequantizeLinear: same shape.
        if name in shapes:
            return shapes[name]
        node = producers[name]
        if node.op_type != "DequantizeLinear":
            raise SystemExit(f"{path}: no shape for {name} (made by {node.op_type})")
        return shape_of(node.input[0])

    total = 0
    parameters = 0
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            parameters += sum(math.prod(shape_of(name)) for name in node.input[1:] if name)
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Conv":
            weight = shape_of(node.input[1])  # [out, in/group, kh, kw]
            total += math.prod(shape_of(node.output[0])) * math.prod(weight[1:])
        elif node.op_type in ("Gemm", "MatMul"):
            b = shape_of(node.input[1])
            transposed = node.op_type == "Gemm" and attrs.get("transB") is not None and attrs["transB"].i
            inner = b[-1] if transposed else b[-2]
            total += math.prod(shape_of(node.output[0])) * inner
        elif node.op_type in ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"):
            raise SystemExit(f"{path}: {node.op_type} is not counted here; give the float form")
    return total, parameters


if __name__ == "__main__":
    for path in sys.argv[1:]:
        macs, parameters = count(path)
        print(macs, parameters, path)
