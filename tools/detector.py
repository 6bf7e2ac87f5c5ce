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
"""
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


def init(key):
    keys = jax.random.split(key, len(CHANNELS) + 3)
    p = {f"c{i}": nets.init_conv(k, cin, cout) for i, ((cin, cout, _), k) in enumerate(zip(CHANNELS, keys))}
    p["xy"] = nets.init_conv(keys[-3], FEAT, 2, k=1)
    p["wh"] = nets.init_conv(keys[-2], FEAT, 2, k=1)
    p["cls"] = nets.init_conv(keys[-1], FEAT, NC, k=1)
    # Start with a low prior for "object here" (most cells are background) and a
    # typical object size (~24 px), so early training is not dominated by either.
    p["cls"]["b"] = jnp.full((NC,), -4.0)
    p["wh"]["b"] = jnp.full((2,), float(np.log(24 / STRIDE)))
    p["xy"]["w"] = p["xy"]["w"] * 0.1
    p["wh"]["w"] = p["wh"]["w"] * 0.1
    return p


def forward_raw(p, x):
    """x: float32 NHWC in [0,1]. Returns (txy, twh, logits), each [B, 256, k]."""
    for i, (_, _, s) in enumerate(CHANNELS):
        x = jax.nn.relu(nets.conv(p[f"c{i}"], x, s))
    B = x.shape[0]
    return tuple(nets.conv(p[h], x).reshape(B, GRID * GRID, -1) for h in ("xy", "wh", "cls"))


def decode(txy, twh, logits):
    """Raw head outputs -> ([B,256,4] cx,cy,w,h in input px, [B,256,3] scores)."""
    cx = (CELL_X + txy[..., 0]) * STRIDE
    cy = (CELL_Y + txy[..., 1]) * STRIDE
    wh = jnp.exp(twh) * STRIDE
    return jnp.stack([cx, cy, wh[..., 0], wh[..., 1]], -1), jax.nn.sigmoid(logits)


def forward(p, x):
    """The exported graph's output: [B, 7, 256]."""
    boxes, scores = decode(*forward_raw(p, x))
    return jnp.concatenate([boxes, scores], -1).transpose(0, 2, 1)


def targets(gt):
    """Per-cell training targets for one image.

    gt: [MAX_OBJ, 5] (class, x0, y0, x1, y1) in input px, class -1 = empty.
    A cell is positive for an object when its centre lies within one cell of
    the object's centre and inside its box, plus always the cell holding the
    centre: up to 4 positives per object gives denser supervision than one,
    and NMS merges the duplicates at inference. Smaller objects claim shared
    cells, since their boxes are the harder ones to get right.
    """
    pos = np.zeros(GRID * GRID, np.float32)
    cls = np.zeros((GRID * GRID, NC), np.float32)
    box = np.zeros((GRID * GRID, 4), np.float32)
    objs = [g for g in gt if g[0] >= 0]
    objs.sort(key=lambda g: -(g[3] - g[1]) * (g[4] - g[2]))
    px, py = CELL_X * STRIDE, CELL_Y * STRIDE
    for c, x0, y0, x1, y1 in objs:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        near = (np.abs(px - cx) < STRIDE) & (np.abs(py - cy) < STRIDE)
        inside = (px > x0) & (px < x1) & (py > y0) & (py < y1)
        m = near & inside
        m[int(min(cy // STRIDE, GRID - 1)) * GRID + int(min(cx // STRIDE, GRID - 1))] = True
        pos[m] = 1
        cls[m] = 0
        cls[m, int(c)] = 1
        box[m] = (x0, y0, x1, y1)
    return pos, cls, box


def loss_fn(p, x, pos, cls_t, box_t):
    txy, twh, logits = forward_raw(p, x)
    npos = jnp.maximum(pos.sum(), 1.0)
    # Class scores: plain BCE over every cell, normalised by the positives, so
    # background cells are pushed to ~0 and object cells to ~1.
    bce = optax.sigmoid_binary_cross_entropy(logits, cls_t).sum() / npos
    # Boxes: L1 on the raw offsets / log sizes (stable gradients early on) plus
    # 1 - IoU on the decoded box (what "tight" is actually measured by).
    t_cx = (box_t[..., 0] + box_t[..., 2]) / 2 / STRIDE - CELL_X
    t_cy = (box_t[..., 1] + box_t[..., 3]) / 2 / STRIDE - CELL_Y
    t_w = jnp.log(jnp.maximum(box_t[..., 2] - box_t[..., 0], 1.0) / STRIDE)
    t_h = jnp.log(jnp.maximum(box_t[..., 3] - box_t[..., 1], 1.0) / STRIDE)
    l1 = (jnp.abs(txy[..., 0] - t_cx) + jnp.abs(txy[..., 1] - t_cy)
          + jnp.abs(twh[..., 0] - t_w) + jnp.abs(twh[..., 1] - t_h))
    boxes, _ = decode(txy, twh, logits)
    px0, py0 = boxes[..., 0] - boxes[..., 2] / 2, boxes[..., 1] - boxes[..., 3] / 2
    px1, py1 = boxes[..., 0] + boxes[..., 2] / 2, boxes[..., 1] + boxes[..., 3] / 2
    iw = jnp.maximum(jnp.minimum(px1, box_t[..., 2]) - jnp.maximum(px0, box_t[..., 0]), 0)
    ih = jnp.maximum(jnp.minimum(py1, box_t[..., 3]) - jnp.maximum(py0, box_t[..., 1]), 0)
    inter = iw * ih
    union = boxes[..., 2] * boxes[..., 3] + (box_t[..., 2] - box_t[..., 0]) * (box_t[..., 3] - box_t[..., 1]) - inter
    iou = inter / jnp.maximum(union, 1e-6)
    box_loss = ((l1 + 3.0 * (1 - iou)) * pos).sum() / npos
    return bce + box_loss, (bce, box_loss)


def train(x_tr, gt_tr, steps, batch=32, lr=3e-3, seed=0, log=print):
    params = init(jax.random.PRNGKey(seed))
    tg = [targets(g) for g in gt_tr]
    pos_all = np.stack([t[0] for t in tg])
    cls_all = np.stack([t[1] for t in tg])
    box_all = np.stack([t[2] for t in tg])
    sched = optax.cosine_onecycle_schedule(steps, lr, pct_start=0.1)
    opt = optax.chain(optax.clip_by_global_norm(10.0), optax.adamw(sched, weight_decay=1e-4))
    state = opt.init(params)

    @jax.jit
    def step(p, s, x, pos, c, b):
        (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x, pos, c, b)
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


def predict(params, u8, batch=250):
    """[B,128,128,3] uint8 -> [B, 7, 256] exactly as the ONNX graph computes it."""
    f = jax.jit(forward)
    return np.concatenate([np.asarray(f(params, jnp.asarray(u8[i:i + batch].astype(np.float32) * np.float32(1 / 255))))
                           for i in range(0, len(u8), batch)])


def export(params, path):
    b = nets.OnnxBuilder()
    x = "images"
    for i, (_, _, s) in enumerate(CHANNELS):
        x = b.conv(x, params[f"c{i}"], s)
    n = GRID * GRID
    # Centres: (t + cell) * stride, folded into one Mul and one Add on [1,2,N].
    xy = b.op("Reshape", [b.conv(x, params["xy"], relu=False), b.const(np.array([1, 2, n], np.int64), "shape")])
    xy = b.op("Mul", [xy, b.const(np.float32(STRIDE), "stride")])
    cells = np.stack([CELL_X, CELL_Y])[None].astype(np.float32) * STRIDE
    xy = b.op("Add", [xy, b.const(cells, "cells")])
    wh = b.op("Reshape", [b.conv(x, params["wh"], relu=False), b.const(np.array([1, 2, n], np.int64), "shape")])
    wh = b.op("Mul", [b.op("Exp", [wh]), b.const(np.float32(STRIDE), "stride")])
    cl = b.op("Reshape", [b.conv(x, params["cls"], relu=False), b.const(np.array([1, NC, n], np.int64), "shape")])
    cl = b.op("Sigmoid", [cl])
    b.op("Concat", [xy, wh, cl], out="output0", axis=1)
    m = b.model("shapes_detector", "images", [1, 3, 128, 128], [("output0", [1, 4 + NC, n])],
                "Detects circles, squares and triangles; YOLOv8 layout [1, 4+3, 256], boxes in input px.")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
