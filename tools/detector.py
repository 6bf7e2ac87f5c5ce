"""shapes-detector: 128x128 letterboxed RGB -> YOLOv8-layout [1, 7, 256].

Backbone: six 3x3 convs (three with stride 2) down to a 16x16 grid (stride 8,
receptive field 63 px, enough for circles and squares up to ~48 px; a wide
triangle is recognised from its apex and slopes, and its box size is learned
from the renders of landscape triangles up to the frame's width). A version
with dilated convolutions (receptive field 143 px) was tried and lost 0.2
to 0.3 of AP@0.5 on the real coin and sudoku photos. Three 1x1 heads
per cell: centre offset (2), log size (2), class logits (3). The ONNX graph
bakes in the decoding so the output is directly usable:

    cx = (gx + 0.5 + tx) * 8      w = exp(tw) * 8      score = sigmoid(logit)

Separate 1x1 heads (not one 7-channel conv) because the allowed op set has no
Slice/Split; three Convs + Concat express the same thing.

The architecture is an `Arch`: input side, a width multiplier on CHANNELS and
extra stride-1 convs. `DEFAULT` is the shipped shapes-detector (every function
defaults to it, and builds exactly the graph it always did); `LARGE` is the
costlier candidate `shapes-detector-large` for boards that can afford it
(tools/build-models --only detector-large).
"""
import dataclasses
import time

import numpy as np
import jax
import jax.numpy as jnp
import optax

import nets

STRIDE, GRID, NC = 8, 16, 3
CHANNELS = [(3, 16, 2), (16, 32, 2), (32, 48, 2), (48, 48, 1), (48, 48, 1), (48, 48, 1)]
FEAT = CHANNELS[-1][1]

# Cell centres in grid units, in the [N] order of the output (row-major y, x).
_gy, _gx = np.mgrid[0:GRID, 0:GRID].astype(np.float32)
CELL_X = (_gx.reshape(-1) + 0.5)
CELL_Y = (_gy.reshape(-1) + 0.5)


@dataclasses.dataclass(frozen=True)
class Arch:
    """One detector architecture. STRIDE stays 8 (three stride-2 convs), so the
    grid is size / 8 and the decoding, the op set and the output layout
    ([1, 4+3, N]) are the same for every Arch: the manifest's "yolov8" decoder
    and the runtime read any of them unchanged."""
    name: str = "shapes-detector"
    size: int = 128    # square input side in pixels; the letterbox target
    width: float = 1.0  # multiplier on CHANNELS' output widths (rounded to multiples of 8)
    extra: int = 0      # more stride-1 3x3 convs at the end: +16 px of receptive field each

    @property
    def grid(self):
        if self.size % STRIDE:
            raise ValueError(f"input size {self.size} is not a multiple of the stride {STRIDE}")
        return self.size // STRIDE

    @property
    def channels(self):
        if self.width == 1.0 and self.extra == 0:
            return CHANNELS
        # Multiples of 8 fit the SIMD widths of the conv kernels (tract's and XLA's).
        scaled = [max(8, int(round(c * self.width / 8)) * 8) for _, c, _ in CHANNELS]
        layers, cin = [], 3
        for (_, _, s), c in zip(CHANNELS, scaled):
            layers.append((cin, c, s))
            cin = c
        return layers + [(cin, cin, 1)] * self.extra

    @property
    def feat(self):
        return self.channels[-1][1]

    @property
    def cells(self):
        """(CELL_X, CELL_Y) of this grid."""
        if self.grid == GRID:
            return CELL_X, CELL_Y
        gy, gx = np.mgrid[0:self.grid, 0:self.grid].astype(np.float32)
        return gx.reshape(-1) + 0.5, gy.reshape(-1) + 0.5

    def receptive_field(self):
        rf, jump = 1, 1
        for _, _, s in self.channels:
            rf, jump = rf + 2 * jump, jump * s
        return rf


DEFAULT = Arch()
# The larger candidate, 3.2x the MACs: a 192 px input (the renders' native sizes are 128-200 px,
# so at 128 most scenes are shrunk and small objects span a few cells, which costs localisation,
# i.e. mAP@0.5:0.95), and two more convs so the receptive field keeps its share of the frame
# (95 px of 192, as 63 of 128). Width stays 1x: on the 2-core training machine a step at 1.25-1.5x
# width (128-176 px) cost 1.3-1.7x this one for similar or more MACs (XLA's CPU convs are much
# faster at 48 channels than at 64 or 72), which would not fit the one-hour training budget.
LARGE = Arch(name="shapes-detector-large", size=192, width=1.0, extra=2)


def init(key, arch=DEFAULT):
    chans, feat = arch.channels, arch.feat
    keys = jax.random.split(key, len(chans) + 3)
    p = {f"c{i}": nets.init_conv(k, cin, cout) for i, ((cin, cout, _), k) in enumerate(zip(chans, keys))}
    p["xy"] = nets.init_conv(keys[-3], feat, 2, k=1)
    p["wh"] = nets.init_conv(keys[-2], feat, 2, k=1)
    p["cls"] = nets.init_conv(keys[-1], feat, NC, k=1)
    # Start with a low prior for "object here" (most cells are background) and a
    # typical object size (~24 px), so early training is not dominated by either.
    p["cls"]["b"] = jnp.full((NC,), -4.0)
    p["wh"]["b"] = jnp.full((2,), float(np.log(24 / STRIDE)))
    p["xy"]["w"] = p["xy"]["w"] * 0.1
    p["wh"]["w"] = p["wh"]["w"] * 0.1
    return p


def forward_raw(p, x, arch=DEFAULT):
    """x: float32 NHWC in [0,1]. Returns (txy, twh, logits), each [B, N, k] (N = 256 by default)."""
    for i, (_, _, s) in enumerate(arch.channels):
        x = jax.nn.relu(nets.conv(p[f"c{i}"], x, s))
    B = x.shape[0]
    return tuple(nets.conv(p[h], x).reshape(B, arch.grid * arch.grid, -1) for h in ("xy", "wh", "cls"))


def decode(txy, twh, logits, arch=DEFAULT):
    """Raw head outputs -> ([B,N,4] cx,cy,w,h in input px, [B,N,3] scores)."""
    cell_x, cell_y = arch.cells
    cx = (cell_x + txy[..., 0]) * STRIDE
    cy = (cell_y + txy[..., 1]) * STRIDE
    wh = jnp.exp(twh) * STRIDE
    return jnp.stack([cx, cy, wh[..., 0], wh[..., 1]], -1), jax.nn.sigmoid(logits)


def forward(p, x, arch=DEFAULT):
    """The exported graph's output: [B, 7, N]."""
    boxes, scores = decode(*forward_raw(p, x, arch), arch)
    return jnp.concatenate([boxes, scores], -1).transpose(0, 2, 1)


def targets(gt, arch=DEFAULT):
    """Per-cell training targets for one image.

    gt: [MAX_OBJ, 5] (class, x0, y0, x1, y1) in input px, class -1 = empty.
    A cell is positive for an object when its centre lies within one cell of
    the object's centre and inside its box, plus always the cell holding the
    centre: up to 4 positives per object gives denser supervision than one,
    and NMS merges the duplicates at inference. Smaller objects claim shared
    cells, since their boxes are the harder ones to get right.
    """
    grid = arch.grid
    cell_x, cell_y = arch.cells
    pos = np.zeros(grid * grid, np.float32)
    cls = np.zeros((grid * grid, NC), np.float32)
    box = np.zeros((grid * grid, 4), np.float32)
    objs = [g for g in gt if g[0] >= 0]
    objs.sort(key=lambda g: -(g[3] - g[1]) * (g[4] - g[2]))
    px, py = cell_x * STRIDE, cell_y * STRIDE
    for c, x0, y0, x1, y1 in objs:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        near = (np.abs(px - cx) < STRIDE) & (np.abs(py - cy) < STRIDE)
        inside = (px > x0) & (px < x1) & (py > y0) & (py < y1)
        m = near & inside
        m[int(min(cy // STRIDE, grid - 1)) * grid + int(min(cx // STRIDE, grid - 1))] = True
        pos[m] = 1
        cls[m] = 0
        cls[m, int(c)] = 1
        box[m] = (x0, y0, x1, y1)
    return pos, cls, box


def loss_fn(p, x, pos, cls_t, box_t, arch=DEFAULT):
    txy, twh, logits = forward_raw(p, x, arch)
    cell_x, cell_y = arch.cells
    npos = jnp.maximum(pos.sum(), 1.0)
    # Class scores: plain BCE over every cell, normalised by the positives, so
    # background cells are pushed to ~0 and object cells to ~1.
    bce = optax.sigmoid_binary_cross_entropy(logits, cls_t).sum() / npos
    # Boxes: L1 on the raw offsets / log sizes (stable gradients early on) plus
    # 1 - IoU on the decoded box (what "tight" is actually measured by).
    t_cx = (box_t[..., 0] + box_t[..., 2]) / 2 / STRIDE - cell_x
    t_cy = (box_t[..., 1] + box_t[..., 3]) / 2 / STRIDE - cell_y
    t_w = jnp.log(jnp.maximum(box_t[..., 2] - box_t[..., 0], 1.0) / STRIDE)
    t_h = jnp.log(jnp.maximum(box_t[..., 3] - box_t[..., 1], 1.0) / STRIDE)
    l1 = (jnp.abs(txy[..., 0] - t_cx) + jnp.abs(txy[..., 1] - t_cy)
          + jnp.abs(twh[..., 0] - t_w) + jnp.abs(twh[..., 1] - t_h))
    boxes, _ = decode(txy, twh, logits, arch)
    px0, py0 = boxes[..., 0] - boxes[..., 2] / 2, boxes[..., 1] - boxes[..., 3] / 2
    px1, py1 = boxes[..., 0] + boxes[..., 2] / 2, boxes[..., 1] + boxes[..., 3] / 2
    iw = jnp.maximum(jnp.minimum(px1, box_t[..., 2]) - jnp.maximum(px0, box_t[..., 0]), 0)
    ih = jnp.maximum(jnp.minimum(py1, box_t[..., 3]) - jnp.maximum(py0, box_t[..., 1]), 0)
    inter = iw * ih
    union = boxes[..., 2] * boxes[..., 3] + (box_t[..., 2] - box_t[..., 0]) * (box_t[..., 3] - box_t[..., 1]) - inter
    iou = inter / jnp.maximum(union, 1e-6)
    box_loss = ((l1 + 3.0 * (1 - iou)) * pos).sum() / npos
    return bce + box_loss, (bce, box_loss)


def train(x_tr, gt_tr, steps, batch=32, lr=3e-3, seed=0, log=print, arch=DEFAULT):
    if x_tr.shape[1:3] != (arch.size, arch.size):
        raise ValueError(f"training images are {x_tr.shape[1:3]}, {arch.name} takes {arch.size}x{arch.size}")
    params = init(jax.random.PRNGKey(seed), arch)
    tg = [targets(g, arch) for g in gt_tr]
    pos_all = np.stack([t[0] for t in tg])
    cls_all = np.stack([t[1] for t in tg])
    box_all = np.stack([t[2] for t in tg])
    sched = optax.cosine_onecycle_schedule(steps, lr, pct_start=0.1)
    opt = optax.chain(optax.clip_by_global_norm(10.0), optax.adamw(sched, weight_decay=1e-4))
    state = opt.init(params)

    @jax.jit
    def step(p, s, x, pos, c, b):
        (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x, pos, c, b, arch)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss, aux

    rng = np.random.default_rng(seed)
    t0 = time.time()
    for it in range(steps):
        idx = rng.integers(0, len(x_tr), batch)
        xb = x_tr[idx].astype(np.float32) * np.float32(1 / 255)
        params, state, loss, (bce, bl) = step(params, state, jnp.asarray(xb), jnp.asarray(pos_all[idx]),
                                              jnp.asarray(cls_all[idx]), jnp.asarray(box_all[idx]))
        if it % 100 == 0 or it == steps - 1:
            log(f"  detector step {it:5d}/{steps} loss {float(loss):.3f} (cls {float(bce):.3f} box {float(bl):.3f})"
                f" ({time.time() - t0:.0f}s)")
    return jax.tree.map(np.asarray, params)


def predict(params, u8, batch=250, arch=DEFAULT):
    """[B,S,S,3] uint8 -> [B, 7, N] exactly as the ONNX graph computes it (S=128, N=256 by default)."""
    f = jax.jit(lambda p, x: forward(p, x, arch))
    return np.concatenate([np.asarray(f(params, jnp.asarray(u8[i:i + batch].astype(np.float32) * np.float32(1 / 255))))
                           for i in range(0, len(u8), batch)])


def export(params, path, arch=DEFAULT):
    b = nets.OnnxBuilder()
    x = "images"
    for i, (_, _, s) in enumerate(arch.channels):
        x = b.conv(x, params[f"c{i}"], s)
    n = arch.grid * arch.grid
    cell_x, cell_y = arch.cells
    # Centres: (t + cell) * stride, folded into one Mul and one Add on [1,2,N].
    xy = b.op("Reshape", [b.conv(x, params["xy"], relu=False), b.const(np.array([1, 2, n], np.int64), "shape")])
    xy = b.op("Mul", [xy, b.const(np.float32(STRIDE), "stride")])
    cells = np.stack([cell_x, cell_y])[None].astype(np.float32) * STRIDE
    xy = b.op("Add", [xy, b.const(cells, "cells")])
    wh = b.op("Reshape", [b.conv(x, params["wh"], relu=False), b.const(np.array([1, 2, n], np.int64), "shape")])
    wh = b.op("Mul", [b.op("Exp", [wh]), b.const(np.float32(STRIDE), "stride")])
    cl = b.op("Reshape", [b.conv(x, params["cls"], relu=False), b.const(np.array([1, NC, n], np.int64), "shape")])
    cl = b.op("Sigmoid", [cl])
    b.op("Concat", [xy, wh, cl], out="output0", axis=1)
    m = b.model(arch.name.replace("-", "_"), "images", [1, 3, arch.size, arch.size], [("output0", [1, 4 + NC, n])],
                f"Detects circles, squares and triangles; YOLOv8 layout [1, 4+3, {n}], boxes in input px.")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())


def params_from_onnx(path, arch=DEFAULT):
    """The parameters of a detector exported by `export` (as it is, or with int8 weights), read
    back from its ONNX file: its
    Conv nodes in graph order are the backbone convs c0, c1, ... then the xy, wh and cls
    heads. The convolutions do not depend on the input side, so these weights can be
    exported again at another `arch.size` (same channels and depth)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    # Weights stored as int8 (tools/variants.py, int8-weights) are read back through their
    # DequantizeLinear: (q - zero point) * scale along the output-channel axis.
    for node in m.graph.node:
        if node.op_type == "DequantizeLinear":
            q, scale, zp = (inits[name] for name in node.input)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = -1
            inits[node.output[0]] = ((q.astype(np.float32) - zp.astype(np.float32).reshape(shape))
                                     * scale.astype(np.float32).reshape(shape))
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    names = [f"c{i}" for i in range(len(arch.channels))] + ["xy", "wh", "cls"]
    if len(convs) != len(names):
        raise ValueError(f"{path}: {len(convs)} Conv nodes, but {arch.name} has {len(names)}")
    params = {}
    for name, node in zip(names, convs):
        w = inits[node.input[1]].astype(np.float32).transpose(2, 3, 1, 0)  # OIHW -> HWIO
        params[name] = {"w": jnp.asarray(w), "b": jnp.asarray(inits[node.input[2]].astype(np.float32))}
    for i, (cin, cout, _) in enumerate(arch.channels):
        if params[f"c{i}"]["w"].shape != (3, 3, cin, cout):
            raise ValueError(f"{path}: conv {i} is {params[f'c{i}']['w'].shape}, {arch.name} has {(3, 3, cin, cout)}")
    return params
