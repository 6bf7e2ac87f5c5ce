"""shapes-classifier: 64x64 RGB -> logits over circle / square / triangle.

Four 3x3 convs (three with stride 2), global average pool, one Gemm.
Normalisation (pixel/255 - 0.5) / 0.25 is done outside the graph, exactly as
the manifest tells the device to.
"""
import time

import numpy as np
import jax
import jax.numpy as jnp
import optax

import nets
import preprocess as pp

CHANNELS = [(3, 16, 2), (16, 32, 2), (32, 64, 2), (64, 64, 1)]


def init(key):
    keys = jax.random.split(key, len(CHANNELS) + 1)
    p = {f"c{i}": nets.init_conv(k, cin, cout) for i, ((cin, cout, _), k) in enumerate(zip(CHANNELS, keys))}
    p["fc"] = {"w": jax.random.normal(keys[-1], (64, 3)) * np.sqrt(1 / 64), "b": jnp.zeros((3,))}
    return p


def forward(p, x):
    """x: float32 NHWC, already normalised."""
    for i, (_, _, s) in enumerate(CHANNELS):
        x = jax.nn.relu(nets.conv(p[f"c{i}"], x, s))
    x = x.mean(axis=(1, 2))
    return jnp.dot(x, p["fc"]["w"], precision=jax.lax.Precision.HIGHEST) + p["fc"]["b"]


def normalize(u8):
    c = pp.CLASSIFIER
    return pp.normalize(u8, mean=c["mean"], std=c["std"], layout="nhwc")


def train(x_tr, y_tr, steps, batch=128, lr=3e-3, seed=0, log=print):
    params = init(jax.random.PRNGKey(seed))
    sched = optax.cosine_onecycle_schedule(steps, lr, pct_start=0.1)
    opt = optax.chain(optax.clip_by_global_norm(5.0), optax.adamw(sched, weight_decay=1e-4))
    state = opt.init(params)

    def loss_fn(p, x, y):
        logits = forward(p, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(p, s, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss

    rng = np.random.default_rng(seed)
    t0 = time.time()
    for it in range(steps):
        idx = rng.integers(0, len(x_tr), batch)
        xb = normalize(x_tr[idx])
        # Horizontal flips are label-preserving for these shapes and survive
        # the device's pre-processing unchanged (the crop is centred).
        flip = rng.uniform(size=batch) < 0.5
        xb[flip] = xb[flip, :, ::-1]
        params, state, loss = step(params, state, jnp.asarray(xb), jnp.asarray(y_tr[idx]))
        if it % 200 == 0 or it == steps - 1:
            log(f"  classifier step {it:5d}/{steps} loss {float(loss):.4f} ({time.time() - t0:.0f}s)")
    return jax.tree.map(np.asarray, params)


def predict(params, u8, batch=500):
    f = jax.jit(forward)
    return np.concatenate([np.asarray(f(params, jnp.asarray(normalize(u8[i:i + batch]))))
                           for i in range(0, len(u8), batch)])


def export(params, path):
    b = nets.OnnxBuilder()
    x = "images"
    for i, (_, _, s) in enumerate(CHANNELS):
        x = b.conv(x, params[f"c{i}"], s)
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x], axis=1)
    b.op("Gemm", [x, b.const(np.asarray(params["fc"]["w"], np.float32), "fc_w"),
                  b.const(np.asarray(params["fc"]["b"], np.float32), "fc_b")], out="logits")
    m = b.model("shapes_classifier", "images", [1, 3, 64, 64], [("logits", [1, 3])],
                "Classifies one centred shape (circle, square, triangle); outputs logits.")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
