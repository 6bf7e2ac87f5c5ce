#!/usr/bin/env python3
"""Reference networks with no stored weights, for latency calibration: MobileNetV2 and ResNet-18.

    python3 tools/reference_net.py [--out-dir models/reference] [--weight 0.01]

Writes two ONNX graphs (opset 13, standard ai.onnx ops only), each with input `input` float32
[1,3,224,224] and output `logits` [1,1000]:

  - `mobilenetv2-224.onnx`: exactly the layers of MobileNetV2 1.0 at 224x224, ~300 M
    multiply-accumulates, most of its layers 1x1 and 3x3 depthwise convolutions;
  - `resnet18-224.onnx`: exactly the layers of ResNet-18 at 224x224, ~1.82 G
    multiply-accumulates, all dense convolutions (no depthwise).

ncnn's benchncnn times both networks (`mobilenet_v2`, `resnet18`) with random weights on every
board lookout has a profile for; lookout times them here and scales a model's measured latency
by the ratio of the one whose kind of convolution the model uses (src/lab/estimate.rs). They are
yardsticks for latency, not classifiers: their outputs mean nothing.

Why the weights are `ConstantOfShape`: every weight tensor is made inside the graph by a
`ConstantOfShape` node (a small constant, 0.01 by default; 0 for biases) from an int64 shape, so
the repository carries no third-party weights and each file is a few KB instead of ~14 MB
(MobileNetV2) or ~47 MB (ResNet-18). The latency of a dense CNN on tract does not depend on the
weight values (its convolution and matrix kernels do the same work for any numbers), and tract
folds constant subgraphs when it loads the model, so the optimized plan runs real Conv/MatMul
kernels over materialised weight tensors, exactly as for the trained network.

MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
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

ResNet-18 (He et al. 2016, "Deep Residual Learning for Image Recognition", Table 1, in
torchvision's layout, the one ncnn's `resnet18` was converted from), batch norm folded into
conv biases:
  - Conv 7x7, 64 channels, stride 2, pad 3, ReLU; MaxPool 3x3, stride 2, pad 1
  - four stages of two basic blocks, 64, 128, 256 and 512 channels; the first block of stages
    2-4 has stride 2 (on its first 3x3 conv) and a 1x1 stride-2 projection on the shortcut;
    each block: Conv 3x3 + ReLU, Conv 3x3, Add the shortcut, ReLU
  - GlobalAveragePool, Flatten, Gemm 512 -> 1000 (transB = 1)

Run it with `python3 tools/reference_net.py`, then e.g.
`lookout inspect models/reference/resnet18-224.onnx` or
`python3 tools/count_macs.py models/reference/*.onnx`. Needs only onnx and numpy.
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
# He et al. 2016, Table 1, 18-layer column: (channels, basic blocks) of conv2_x .. conv5_x.
RESNET18_STAGES = [(64, 2), (128, 2), (256, 2), (512, 2)]
RESNET_STEM_CHANNELS = 64
CLASSES = 1000
SIZE = 224


class Graph:
    """Nodes plus the few initializers (int64 shapes, Clip bounds); weights come from ConstantOfShape."""

    def __init__(self, weight, bias, clip_bounds=True):
        self.nodes, self.inits, self.shapes = [], [], {}
        self.weight, self.bias = weight, bias
        self.n = 0
        # Only ReLU6 needs the bounds; added first so that MobileNetV2's file stays byte for
        # byte what it was before ResNet-18 was added here.
        if clip_bounds:
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

    def conv(self, x, cin, cout, k, stride=1, group=1, act="relu6"):
        w = self.constant("w", [cout, cin // group, k, k], self.weight)
        b = self.constant("b", [cout], self.bias)
        y = self.name("conv")
        pad = (k - 1) // 2
        self.nodes.append(helper.make_node("Conv", [x, w, b], [y], name=y, kernel_shape=[k, k],
                                           strides=[stride, stride], pads=[pad] * 4, group=group))
        if act == "relu6":
            return self.relu6(y)
        if act == "relu":
            return self.relu(y)
        return y

    def relu6(self, x):
        y = self.name("relu6")
        self.nodes.append(helper.make_node("Clip", [x, "relu6_min", "relu6_max"], [y], name=y))
        return y

    def relu(self, x):
        y = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [y], name=y))
        return y

    def add(self, a, b):
        y = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y], name=y))
        return y


def head(g, x, channels):
    """GlobalAveragePool, Flatten, Gemm to the classes: the end both networks share."""
    pooled = g.name("pool")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled], name=pooled))
    flat = g.name("flatten")
    g.nodes.append(helper.make_node("Flatten", [pooled], [flat], name=flat, axis=1))
    w = g.constant("fc_w", [CLASSES, channels], g.weight)
    b = g.constant("fc_b", [CLASSES], g.bias)
    g.nodes.append(helper.make_node("Gemm", [flat, w, b], ["logits"], name="fc", transB=1))


def finish(g, graph_name, doc):
    """The checked model around `g`'s nodes: input `input` [1,3,224,224], output `logits`."""
    graph = helper.make_graph(
        g.nodes, graph_name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="lookout tools/reference_net.py")
    model.ir_version = 8
    model.doc_string = doc
    onnx.checker.check_model(model, full_check=True)
    return model


def build_mobilenetv2(weight=0.01, bias=0.0):
    """MobileNetV2 1.0 at 224x224."""
    g = Graph(weight, bias)
    x = g.conv("input", 3, STEM_CHANNELS, 3, stride=2)
    cin = STEM_CHANNELS
    for t, c, n, s in BOTTLENECKS:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = g.conv(x, cin, hidden, 1) if t != 1 else x
            y = g.conv(y, hidden, hidden, 3, stride=stride, group=hidden)
            y = g.conv(y, hidden, c, 1, act=None)
            x = g.add(x, y) if stride == 1 and cin == c else y
            cin = c
    x = g.conv(x, cin, LAST_CHANNELS, 1)
    head(g, x, LAST_CHANNELS)
    return finish(g, "mobilenetv2-224-reference",
                  "MobileNetV2 1.0 224x224 architecture (Sandler et al. 2018, Table 2) with "
                  f"constant weights ({weight}) and biases ({bias}) made by ConstantOfShape; "
                  "for latency calibration only, no trained weights")


def build_resnet18(weight=0.01, bias=0.0):
    """ResNet-18 at 224x224, torchvision's layout (stride on the first 3x3 of a block)."""
    g = Graph(weight, bias, clip_bounds=False)
    x = g.conv("input", 3, RESNET_STEM_CHANNELS, 7, stride=2, act="relu")
    pooled = g.name("maxpool")
    g.nodes.append(helper.make_node("MaxPool", [x], [pooled], name=pooled, kernel_shape=[3, 3],
                                    strides=[2, 2], pads=[1] * 4))
    x, cin = pooled, RESNET_STEM_CHANNELS
    for stage, (c, blocks) in enumerate(RESNET18_STAGES):
        for i in range(blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            y = g.conv(x, cin, c, 3, stride=stride, act="relu")
            y = g.conv(y, c, c, 3, act=None)
            # The shortcut needs a 1x1 projection only where the shape changes.
            shortcut = x if stride == 1 and cin == c else g.conv(x, cin, c, 1, stride=stride,
                                                                   act=None)
            x = g.relu(g.add(shortcut, y))
            cin = c
    head(g, x, cin)
    return finish(g, "resnet18-224-reference",
                  "ResNet-18 224x224 architecture (He et al. 2016, Table 1; torchvision layout, "
                  f"batch norm folded) with constant weights ({weight}) and biases ({bias}) made "
                  "by ConstantOfShape; for latency calibration only, no trained weights")


NETWORKS = {"mobilenetv2-224.onnx": build_mobilenetv2, "resnet18-224.onnx": build_resnet18}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "models", "reference"))
    parser.add_argument("--weight", type=float, default=0.01, help="value of every weight")
    args = parser.parse_args()
    out_dir = os.path.normpath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    for file, make in NETWORKS.items():
        model = make(args.weight)
        out = os.path.join(out_dir, file)
        onnx.save(model, out)
        print(f"{out}: {os.path.getsize(out)} bytes, {len(model.graph.node)} nodes")


if __name__ == "__main__":
    main()
