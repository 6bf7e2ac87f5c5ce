"""The one pre-processing implementation shared by training, export checks and
tools/reference.py, so the network is trained on exactly the pixels the device
will feed it. Needs only numpy and Pillow (it is part of the reference stack).

Two steps, kept apart because training stores the uint8 result of step 1:
  geometry(img, mode, W, H, pad)  -> uint8 HxWx3 image of the model's size, plus
                                     the mapping back to source pixels
  normalize(u8, ...)              -> float32 tensor in the model's layout
"""
import math

import numpy as np
from PIL import Image


def round_half_up(x):
    """Round halves away from zero (as Rust's f64::round does) rather than to
    even (Python's round), so both sides agree on e.g. 76.5 -> 77."""
    return int(math.floor(x + 0.5))


def letterbox_params(w, h, W, H):
    r = min(W / w, H / h)
    nw = min(max(round_half_up(w * r), 1), W)
    nh = min(max(round_half_up(h * r), 1), H)
    return r, nw, nh, (W - nw) // 2, (H - nh) // 2


def center_crop_params(w, h, W, H):
    cw = min(w, round_half_up(h * W / H))
    ch = min(h, round_half_up(w * H / W))
    return cw, ch, (w - cw) // 2, (h - ch) // 2


def geometry(img, mode, W, H, pad_value=114, interpolation="bilinear"):
    """Resize a PIL RGB image to W x H as the device does.

    Returns (uint8 HxWx3 array, transform) where transform maps model-input
    pixels back to source pixels: src = (model - offset) / scale + crop,
    given as dict(sx, sy, ox, oy, cx, cy).
    """
    resample = Image.BILINEAR if interpolation == "bilinear" else Image.NEAREST
    w, h = img.size
    if mode == "stretch":
        out = img.resize((W, H), resample)
        t = dict(sx=W / w, sy=H / h, ox=0, oy=0, cx=0, cy=0)
    elif mode == "letterbox":
        r, nw, nh, left, top = letterbox_params(w, h, W, H)
        canvas = Image.new("RGB", (W, H), (pad_value,) * 3)
        canvas.paste(img.resize((nw, nh), resample), (left, top))
        out = canvas
        # Boxes map back with r itself (as the spec and lookout do), not nw/w;
        # the rounding of nw makes these differ by < 0.5 px across the image.
        t = dict(sx=r, sy=r, ox=left, oy=top, cx=0, cy=0)
    elif mode == "center-crop":
        cw, ch, left, top = center_crop_params(w, h, W, H)
        out = img.crop((left, top, left + cw, top + ch)).resize((W, H), resample)
        t = dict(sx=W / cw, sy=H / ch, ox=0, oy=0, cx=left, cy=top)
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    return np.asarray(out, dtype=np.uint8), t


def normalize(u8, color="rgb", scale=1 / 255, mean=(0, 0, 0), std=(1, 1, 1), layout="nchw"):
    """uint8 (..., H, W, 3) RGB -> float32 value = (pixel*scale - mean[c]) / std[c]."""
    x = u8.astype(np.float32)
    if color == "bgr":
        x = x[..., ::-1]
    elif color == "gray":
        # ITU-R 601 luma in float from the resized u8 pixels.
        x = (0.299 * x[..., 0:1] + 0.587 * x[..., 1:2] + 0.114 * x[..., 2:3]).astype(np.float32)
    c = x.shape[-1]
    mean = np.asarray(mean, dtype=np.float32)[:c]
    std = np.asarray(std, dtype=np.float32)[:c]
    x = (x * np.float32(scale) - mean) / std
    if layout == "nchw":
        x = np.moveaxis(x, -1, -3)
    return np.ascontiguousarray(x, dtype=np.float32)


# The two models' settings, in one place, used by training and by the manifests.
CLASSIFIER = dict(mode="center-crop", W=64, H=64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
DETECTOR = dict(mode="letterbox", W=128, H=128, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), pad=114)
