#!/usr/bin/env python3
"""MobileNetV2 1.0 at 224x224 with no stored weights: a reference network for latency calibration.

    python3 tools/reference_net.py [--out models/reference/mobilenetv2-224.onnx] [--weight 0.01]

Writes an ONNX graph (opset 13, standard ai.onnx ops only) with input `input` float32
[1,3,224,224] and output `logits` [1,1000] that has exactly the layers of MobileNetV2 1.0 at
224x224, the standard ~300 M multiply-accumulate network that ncnn's benchncnn also times with
random weights. It is a yardstick for latency, not a classifier: its outputs mean nothing.

Why the weights are `ConstantOfShape`: every weight tensor is made inside the graph by a
`ConstantOfShape` node (a small constant, 0.01 by default; 0 for biases) from an int64 shape, so
the repository carries no third-party weights and the file is a few KB instead of ~14 MB. The
latency of a dense CNN on tract does not depend on the weight values (its convolution and matrix
kernels do the same work for any numbers), and tract folds constant subgraphs when it loads the
model, so the optimized plan runs real Conv/MatMul kernels over materialised weight tensors,
exactly as for the trained network.

Architecture (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
Table 2), batch norm folded into conv biases as in every exported MobileNetV2:
  - Conv 3x3, 32 channels, stride 2, ReLU6
  - inverted-residual bottlenecks, rows (t, c, n, s) =
      (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1);
    each block: 1x1 expansion to t*cin channels + ReLU6 (omitted when t = 1), 3x3 depthwise
    (Conv with group = channels, stride s on the first block of a row, 1 after) + ReLU6,
    1x1 linear projection to c channels; residual Add when stride is 1 and cin == c
  - Conv 1x1, 1280 channels, ReLU6
  - GlobalAveragePool, Flatten, Gemm 1280 -> 1000 (transB = 1)
ReLU6 is Clip(x, 0, 6) with min/max as inputs (opset 13); 3x3 convolutions pad 1 on each side.
Dropout (inference no-op) and softmax are not part of it.

Run it with `python3 tools/reference_net.py`, then e.g.
`lookout inspect models/reference/mobilenetv2-224.onnx` or
`python3 tools/count_macs.py models/reference/mobilenetv2-224.onnx`. Needs only onnx and numpy.
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Sandler et al. 2018, Table 2: expansion t, output channels c, repeats n, first stride s.
BOTTLENECKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
CLASSES = 1000
SIZE = 224


class Graph:
    """Nodes plus the few initializers (int64 shapes, Clip bounds); weights come from ConstantOfShape."""

    def __init__(self, weight, bias):
        self.nodes, self.inits, self.shapes = [], [], {}
        self.weight, self.bias = weight, bias
        self.n = 0
        self.inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "relu6_min"))
        self.inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "relu6_max"))

    def name(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n}"

    def shape(self, dims):
        # One int64 shape initializer per distinct shape; shape inference reads it as data.
        key = tuple(dims)
        if key not in self.shapes:
            name = "shape_" + "x".join(map(str, key))
            self.inits.append(numpy_helper.from_array(np.array(key, np.int64), name))
            self.shapes[key] = name
        return self.shapes[key]

    def constant(self, prefix, dims, value):
        out = self.name(prefix)
        fill = numpy_helper.from_array(np.array([value], np.float32), "value")
        self.nodes.append(helper.make_node("ConstantOfShape", [self.shape(dims)], [out],
                                           name=out + "_fill", value=fill))
        return out

    def conv(self, x, cin, cout, k, stride=1, group=1, relu6=True):
        w = self.constant("w", [cout, cin // group, k, k], self.weight)
        b = self.constant("b", [cout], self.bias)
        y = self.name("conv")
        pad = (k - 1) // 2
        self.nodes.append(helper.make_node("Conv", [x, w, b], [y], name=y, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=[pad] * 4, group=group))
        return self.relu6(y) if relu6 else y

    def relu6(self, x):
        y = self.name("relu6")
        self.nodes.append(helper.make_node("Clip", [x, "relu6_min", "relu6_max"], [y], name=y))
        return y

    def add(self, a, b):
        y = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y], name=y))
        return y


def build(weight=0.01, bias=0.0):
    g = Graph(weight, bias)
    x = g.conv("input", 3, STEM_CHANNELS, 3, stride=2)
    cin = STEM_CHANNELS
    for t, c, n, s in BOTTLENECKS:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = g.conv(x, cin, hidden, 1) if t != 1 else x
            y = g.conv(y, hidden, hidden, 3, stride=stride, group=hidden)
            y = g.conv(y, hidden, c, 1, relu6=False)
            x = g.add(x, y) if stride == 1 and cin == c else y
            cin = c
    x = g.conv(x, cin, LAST_CHANNELS, 1)
    pooled = g.name("pool")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled], name=pooled))
    flat = g.name("flatten")
    g.nodes.append(helper.make_node("Flatten", [pooled], [flat], name=flat, axis=1))
    w = g.constant("fc_w", [CLASSES, LAST_CHANNELS], weight)
    b = g.constant("fc_b", [CLASSES], bias)
    g.nodes.append(helper.make_node("Gemm", [flat, w, b], ["logits"], name="fc", transB=1))

    graph = helper.make_graph(
        g.nodes, "mobilenetv2-224-reference",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="lookout tools/reference_net.py")
    model.ir_version = 8
    model.doc_string = ("MobileNetV2 1.0 224x224 architecture (Sandler et al. 2018, Table 2) with "
                        f"constant weights ({weight}) and biases ({bias}) made by ConstantOfShape; "
                        "for latency calibration only, no trained weights")
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "models", "reference",
        "mobilenetv2-224.onnx"))
    parser.add_argument("--weight", type=float, default=0.01, help="value of every weight")
    args = parser.parse_args()
    model = build(args.weight)
    out = os.path.normpath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    onnx.save(model, out)
    print(f"{out}: {os.path.getsize(out)} bytes, {len(model.graph.node)} nodes")


if __name__ == "__main__":
    main()
