"""Tiny CNN building blocks in JAX, and their ONNX counterparts.

Activations are NHWC inside JAX (XLA's CPU convolutions are fastest there);
the exported ONNX graph is NCHW, so weights are transposed HWIO -> OIHW on
export. Padding is always explicit and symmetric (1 px for 3x3): XLA's "SAME"
pads stride-2 convolutions asymmetrically, which ONNX `pads` would not match.
"""
import numpy as np
import jax
import jax.numpy as jnp
import onnx
from onnx import TensorProto, helper, numpy_helper


def init_conv(key, cin, cout, k=3):
    # He-normal: the nets are plain ReLU stacks without normalisation layers.
    w = jax.random.normal(key, (k, k, cin, cout), jnp.float32) * np.sqrt(2.0 / (k * k * cin))
    return {"w": w, "b": jnp.zeros((cout,), jnp.float32)}


def conv(p, x, stride=1):
    k = p["w"].shape[0]
    pad = (k - 1) // 2
    y = jax.lax.conv_general_dilated(
        x, p["w"], (stride, stride), ((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST)
    return y + p["b"]


class OnnxBuilder:
    """Accumulates nodes and initializers; names are generated so call sites stay short."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def _name(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, arr, prefix="c"):
        name = self._name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type, inputs, out=None, **attrs):
        out = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x, p, stride=1, relu=True, out=None):
        w = np.asarray(p["w"], np.float32).transpose(3, 2, 0, 1)  # HWIO -> OIHW
        k = w.shape[2]
        pad = (k - 1) // 2
        y = self.op("Conv", [x, self.const(w, "w"), self.const(np.asarray(p["b"], np.float32), "b")],
                    out=None if relu else out, kernel_shape=[k, k], strides=[stride, stride],
                    pads=[pad, pad, pad, pad])
        return self.op("Relu", [y], out=out) if relu else y

    def model(self, name, inp, in_shape, outputs, doc):
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(inp, TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, s) for o, s in outputs],
            self.inits)
        m = helper.make_model(graph, producer_name="lookout-tools", doc_string=doc,
                              opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m
