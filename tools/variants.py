#!/usr/bin/env python3
"""Make the quantized variants of the shapes models, write their manifests, and
measure each one against the fp32 model with onnxruntime on held-out data.

    python3 tools/variants.py                                   # both models
    python3 tools/variants.py --model shapes-detector --out models/variants

For each base model <name> (shapes-classifier, shapes-detector) the fp32 source
is models/variants/<name>-fp32.onnx if it exists, else models/<name>.onnx, and
--out (default models/variants/) receives, each beside its manifest
<name>-<form>.toml (tools/write_manifest.py, `quantization = "<form>"`):

  <name>-fp32.onnx            byte copy of the source
  <name>-fp16.onnx            float initializers of > 16 elements stored as
                              float16, each behind Cast(to=FLOAT) that takes
                              the original name: fp16 storage, fp32 compute
  <name>-int8-weights.onnx    Conv / Gemm / MatMul weights stored as symmetric
                              per-output-channel int8 (scale = max|w| / 127,
                              zero point 0) behind DequantizeLinear; biases fp32
  <name>-int8-qdq.onnx        onnxruntime quantize_static, QDQ, per channel,
                              s8 activations / s8 weights, Conv + Gemm + MatMul
  <name>-int8-qoperator.onnx  quantize_static, QOperator, per channel, Conv and
                              MatMul only (-> QLinearConv), s8 / s8

The first three are written by hand with the onnx helper API. The static ones
calibrate with MinMax on 200 renders of their own seeds (data.SEED_CAL_*),
never on the held-out (2001/2002) or test (3001/3002) seeds, normalised as the
base manifest models/<name>.toml says. Every variant must use only the standard
ai.onnx domain (tract rejects com.microsoft ops); the script stops naming the
op otherwise.

Then, per variant, on held-out data (classifier: 2000 renders of seed 2001;
detector: 500 scenes of seed 2002; cached in --work like tools/build-models):
size, op counts, onnxruntime median latency (1 intra-op thread, default graph
optimisation ORT_ENABLE_ALL, 20 warm-up + 200 timed runs, variants interleaved
so background load hits them alike), agreement with the fp32 model (max |diff|
of raw outputs; top-1 agreement for the classifier; max |diff| of class scores
and the best-class agreement of candidates the fp32 model scores >= the
manifest threshold for the detector), and accuracy (classifier top-1;
detector COCO mAP@0.5 and mAP@0.5:0.95 via pycocotools, see coco_map). The
accuracy is measured a second time with graph optimisation off, where ORT runs
QDQ models as float ops between Quantize/Dequantize pairs (as tract does)
instead of fusing them into int8 kernels.

Results are printed and written to <out>/variants-report.txt and .json (a run
for one model keeps the other model's entries while their files are unchanged).
Exit status 1 if onnxruntime cannot load or run a variant, or if the fp32,
fp16 or int8-weights variant agrees with fp32 on less than 99 % of top-1
decisions; quantization error of the int8 forms is reported, not judged.

Needs tools/requirements-ref.txt plus pycocotools (2.0.11).
"""
import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)

import data  # noqa: E402
import preprocess as pp  # noqa: E402
import reference  # noqa: E402
import write_manifest  # noqa: E402

ROOT = os.path.dirname(TOOLS)
MODELS = os.path.join(ROOT, "models")

BASES = {
    "shapes-classifier": dict(kind="classify", cal_seed=data.SEED_CAL_CLS, val_seed=data.SEED_VAL_CLS, val_count=2000),
    "shapes-detector": dict(kind="detect", cal_seed=data.SEED_CAL_DET, val_seed=data.SEED_VAL_DET, val_count=500),
}
FORMS = ["fp32", "fp16", "int8-weights", "int8-qdq", "int8-qoperator"]
# Forms that only change how weights are stored: their decisions must match fp32.
STORAGE_FORMS = ("fp32", "fp16", "int8-weights")
MIN_AGREEMENT = 0.99
CAL_COUNT = 200
WARMUP, RUNS = 20, 200
FP16_MIN_ELEMENTS = 17  # "more than 16 elements": small biases and scalars stay fp32
STANDARD_DOMAINS = ("", "ai.onnx")
# Detector mAP: keep nearly every candidate (COCO ranks by score), at most 100 per image.
MAP_SCORE_TH, MAP_MAX_DET = 0.001, 100


# ---------------------------------------------------------------- building

def source_path(name):
    """The fp32 model a variant set is made from."""
    kept = os.path.join(MODELS, "variants", f"{name}-fp32.onnx")
    return kept if os.path.exists(kept) else os.path.join(MODELS, f"{name}.onnx")


def normalized(u8, m):
    """uint8 NHWC renders -> float32 model inputs, exactly as the manifest says."""
    pre = m["preprocess"]
    return pp.normalize(u8, pre["color"], pre["scale"], pre["mean"], pre["std"], m["input"]["layout"])


def check_domains(model, path):
    """Stop, naming the op, if any node is outside the standard ai.onnx domain."""
    bad = sorted({f"{n.domain}:{n.op_type}" for n in model.graph.node if n.domain not in STANDARD_DOMAINS})
    if bad:
        raise SystemExit(f"{os.path.relpath(path)}: non-standard ops {', '.join(bad)}; tract cannot run them")


def save(model, path):
    """Check a hand-built variant (full ONNX check, standard domain only), then write it."""
    onnx.checker.check_model(model, full_check=True)
    check_domains(model, path)
    onnx.save(model, path)


def to_fp16(model):
    """fp16 storage: big float initializers become float16 + Cast(to=FLOAT)."""
    graph = model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < FP16_MIN_ELEMENTS:
            continue
        w = numpy_helper.to_array(init)
        h = w.astype(np.float16)
        if not np.all(np.isfinite(h)):
            raise SystemExit(f"{init.name}: values beyond the float16 range")
        name = init.name
        init.CopyFrom(numpy_helper.from_array(h, f"{name}_fp16"))
        # The Cast's output takes the original name, so no consumer changes.
        casts.append(helper.make_node("Cast", [f"{name}_fp16"], [name], name=f"{name}_cast", to=TensorProto.FLOAT))
    # Prepended: nodes must stay topologically sorted and the casts depend only on initializers.
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def weight_axes(model):
    """{initializer name: output-channel axis} for the weights of Conv, Gemm, MatMul."""
    inits = {i.name: i for i in model.graph.initializer}
    axes = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = node.input[1]
        if node.op_type == "Conv":
            axis = 0  # OIHW
        elif node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            axis = 0 if trans_b else 1  # B is [N, K] with transB, else [K, N]
        else:
            axis = len(inits[w].dims) - 1  # MatMul B is [..., K, N]
        if axes.get(w, axis) != axis:
            raise SystemExit(f"{w} is used with two different output-channel axes")
        axes[w] = axis
    return axes


def to_int8_weights(model):
    """Weight-only int8: symmetric per-output-channel int8 behind DequantizeLinear."""
    graph = model.graph
    axes = weight_axes(model)
    dequants = []
    for init in graph.initializer:
        if init.name not in axes or init.data_type != TensorProto.FLOAT:
            continue
        name, axis = init.name, axes[init.name]
        w = numpy_helper.to_array(init).astype(np.float32)
        other = tuple(a for a in range(w.ndim) if a != axis)
        scale = (np.abs(w).max(axis=other) / 127.0).astype(np.float32)
        scale[scale == 0] = 1.0  # an all-zero channel: any scale gives q = 0
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        init.CopyFrom(numpy_helper.from_array(q, f"{name}_q"))
        graph.initializer.append(numpy_helper.from_array(scale, f"{name}_scale"))
        graph.initializer.append(numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_zp"))
        dequants.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zp"], [name],
                                         name=f"{name}_dequant", axis=axis))
    nodes = dequants + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def needs_pre_process(model):
    """True unless onnx shape inference already gives every tensor a static shape,
    which is all quant_pre_process would add for these plain fixed-batch graphs."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for node in model.graph.node:
        for out in node.output:
            v = known.get(out)
            if v is None or not v.type.tensor_type.HasField("shape"):
                return True
            if any(not d.HasField("dim_value") for d in v.type.tensor_type.shape.dim):
                return True
    return False


class Calibration:
    """onnxruntime CalibrationDataReader over a fixed array of inputs."""

    def __init__(self, input_name, x):
        self.input_name, self.x, self.i = input_name, x, 0

    def get_next(self):
        if self.i == len(self.x):
            return None
        self.i += 1
        return {self.input_name: self.x[self.i - 1:self.i]}

    def rewind(self):
        self.i = 0


def quantize_static(src, dst, x_cal, input_name, qformat, op_types):
    """quantize_static with MinMax calibration, per channel, s8 weights. Activations
    are s8; falls back to u8 if onnxruntime cannot run the s8 model. Returns the
    activation type used."""
    from onnxruntime import quantization as q

    for act in (q.QuantType.QInt8, q.QuantType.QUInt8):
        q.quantize_static(src, dst, Calibration(input_name, x_cal), quant_format=qformat,
                          op_types_to_quantize=op_types, per_channel=True,
                          activation_type=act, weight_type=q.QuantType.QInt8,
                          calibrate_method=q.CalibrationMethod.MinMax)
        try:
            session(dst, True).run(None, {input_name: x_cal[:1]})
            return "QInt8" if act == q.QuantType.QInt8 else "QUInt8"
        except Exception as e:  # noqa: BLE001 - any load/run failure means: try the other type
            print(f"  {os.path.basename(dst)} with {act}: onnxruntime cannot run it ({e}); trying u8 activations")
    raise SystemExit(f"{dst}: onnxruntime cannot run it with s8 or u8 activations")


def build(name, out, cache):
    """Write every variant of `name` and its manifest into `out`; returns build facts."""
    from onnxruntime import quantization as q

    spec = BASES[name]
    m = reference.load_manifest(os.path.join(MODELS, f"{name}.toml"))
    src = source_path(name)
    paths = {f: os.path.join(out, f"{name}-{f}.onnx") for f in FORMS}
    os.makedirs(out, exist_ok=True)
    if not (os.path.exists(paths["fp32"]) and os.path.samefile(src, paths["fp32"])):
        shutil.copyfile(src, paths["fp32"])
    base = onnx.load(paths["fp32"])
    opsets = {o.domain or "ai.onnx": o.version for o in base.opset_import}
    if opsets.get("ai.onnx", 0) < 13:
        raise SystemExit(f"{src}: opset {opsets} < 13, which per-axis DequantizeLinear needs")
    save(to_fp16(onnx.load(paths["fp32"])), paths["fp16"])
    save(to_int8_weights(onnx.load(paths["fp32"])), paths["int8-weights"])

    x_cal_u8, _ = data.build(spec["kind"], spec["cal_seed"], CAL_COUNT, cache)
    x_cal = normalized(x_cal_u8, m)
    pre = needs_pre_process(base)
    with tempfile.TemporaryDirectory() as tmp:
        qsrc = paths["fp32"]
        if pre:
            qsrc = os.path.join(tmp, "pre.onnx")
            q.quant_pre_process(paths["fp32"], qsrc)
        # QDQ keeps Gemm a float op between Q/DQ pairs, so it stays standard ONNX.
        act_qdq = quantize_static(qsrc, paths["int8-qdq"], x_cal, m["input"]["name"], q.QuantFormat.QDQ,
                                  ["Conv", "Gemm", "MatMul"])
        # QOperator would turn Gemm into com.microsoft QGemm: Conv and MatMul only.
        act_qop = quantize_static(qsrc, paths["int8-qoperator"], x_cal, m["input"]["name"],
                                  q.QuantFormat.QOperator, ["Conv", "MatMul"])
    for f in ("int8-qdq", "int8-qoperator"):
        check_domains(onnx.load(paths[f]), paths[f])
    for f in FORMS:
        write_manifest.write(paths[f], base=name, variant=f)
    return dict(source=os.path.relpath(src, ROOT), opset=opsets, pre_process=pre,
                calibration=dict(seed=spec["cal_seed"], count=CAL_COUNT, method="MinMax"),
                activation_type={"int8-qdq": act_qdq, "int8-qoperator": act_qop}, paths=paths, manifest=m)


# ---------------------------------------------------------------- measuring

def session(path, optimized, save_optimized=None):
    """One-thread CPU session; `optimized` = ORT_ENABLE_ALL (the default), else no
    graph rewrites. `save_optimized`: where to write the graph ORT really runs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if save_optimized:
        opts.optimized_model_filepath = save_optimized
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def op_counts(model):
    """{op type: count}, non-standard domains spelt domain:op."""
    return dict(sorted(Counter((n.domain + ":" if n.domain not in STANDARD_DOMAINS else "") + n.op_type
                               for n in model.graph.node).items()))


def run_all(sess, input_name, x):
    """First output for every input, batch 1 (the models have a fixed batch of 1)."""
    return np.stack([sess.run(None, {input_name: x[i:i + 1]})[0][0] for i in range(len(x))])


def latencies(sessions, input_name, x1):
    """Median ms per session over RUNS runs after WARMUP, the sessions interleaved
    run by run so that background load (builds on this machine) hits all alike,
    and their order rotated every round so that none always follows the same one."""
    for s in sessions.values():
        for _ in range(WARMUP):
            s.run(None, {input_name: x1})
    keys = list(sessions)
    times = {k: [] for k in keys}
    for r in range(RUNS):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            t = time.perf_counter()
            sessions[k].run(None, {input_name: x1})
            times[k].append(time.perf_counter() - t)
    return {k: dict(median_ms=float(np.median(v)) * 1e3, p10_ms=float(np.percentile(v, 10)) * 1e3,
                    p90_ms=float(np.percentile(v, 90)) * 1e3) for k, v in times.items()}


def coco_map(dets_per_image, gts_per_image, num_classes):
    """COCO box mAP with pycocotools (tools/coco_eval.py): returns (mAP@0.5, mAP@0.5:0.95).

    dets_per_image: per image, rows (x0, y0, x1, y1, score, class);
    gts_per_image:  per image, rows (class, x0, y0, x1, y1), class < 0 = empty slot.
    Boxes in one pixel frame for both (here: model-input pixels); callers pass at most
    100 detections per image, best first. Returns (nan, nan) without ground truth."""
    import coco_eval

    images, dets = [], {}
    for i, (d, g) in enumerate(zip(dets_per_image, gts_per_image)):
        objects = [(int(c), x0, y0, x1, y1) for c, x0, y0, x1, y1 in np.asarray(g, np.float64).reshape(-1, 5)
                   if c >= 0]
        images.append((str(i), 0, 0, objects))
        dets[str(i)] = [(int(c), float(s), x0, y0, x1, y1)
                        for x0, y0, x1, y1, s, c in np.asarray(d, np.float64).reshape(-1, 6)]
    if not any(objects for *_, objects in images):
        return float("nan"), float("nan")
    r = coco_eval.evaluate(images, dets, num_classes)
    return r["map50"], r["map50_95"]


def detections(out, m):
    """Raw detector output [4+C, N] -> rows (x0, y0, x1, y1, score, class) for mAP,
    decoded by tools/reference.py at a near-zero score threshold."""
    boxes, scores, classes, _ = reference.candidates(out[None], m)
    keep = reference.nms(boxes, scores, classes, MAP_SCORE_TH, m["thresholds"]["iou"], MAP_MAX_DET)
    return np.array([[*boxes[k], scores[k], classes[k]] for k in keep], np.float64).reshape(-1, 6)


def accuracy(outs, y, m):
    """Classifier top-1, or detector COCO mAP, of raw outputs against labels."""
    if m["output"]["decoder"] == "classify":
        return {"top1": float((outs.argmax(1) == y).mean())}
    map50, map50_95 = coco_map([detections(o, m) for o in outs], y, len(m["labels"]))
    return {"map50": map50, "map50_95": map50_95}


def agreement(outs, ref, m):
    """How far a variant's raw outputs are from the fp32 model's."""
    r = {"max_abs_diff": float(np.abs(outs - ref).max()), "fp32_max_abs": float(np.abs(ref).max())}
    if m["output"]["decoder"] == "classify":
        r["top1_agreement"] = float((outs.argmax(1) == ref.argmax(1)).mean())
    else:
        # [4+C, N]: rows 0-3 are boxes in pixels, the rest class scores in 0..1.
        r["max_abs_diff_scores"] = float(np.abs(outs[:, 4:] - ref[:, 4:]).max())
        r["max_abs_diff_boxes_px"] = float(np.abs(outs[:, :4] - ref[:, :4]).max())
        # The detector's "top-1": best class of every candidate fp32 would report.
        live = ref[:, 4:].max(1) >= m["thresholds"]["score"]
        same = outs[:, 4:].argmax(1) == ref[:, 4:].argmax(1)
        r["top1_agreement"] = float(same[live].mean())
        r["top1_candidates"] = int(live.sum())
    return r


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def evaluate(name, facts, cache):
    """Measure every variant of `name`; returns (report entry, failure messages)."""
    spec, m, paths = BASES[name], facts["manifest"], facts["paths"]
    inp = m["input"]["name"]
    xv_u8, yv = data.build(spec["kind"], spec["val_seed"], spec["val_count"], cache)
    xv = normalized(xv_u8, m)
    failures, sessions, ort_ops = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for f in FORMS:
            try:
                opt_path = os.path.join(tmp, f + ".onnx")
                sessions[f] = {True: session(paths[f], True, opt_path), False: session(paths[f], False)}
                # What ORT's optimizer turned the graph into explains its timings (and its numbers).
                ort_ops[f] = op_counts(onnx.load(opt_path))
            except Exception as e:  # noqa: BLE001 - reported as a failure of this variant
                failures.append(f"{name}-{f}: onnxruntime cannot load it: {e}")
    print(f"{name}: timing {len(sessions)} variants ({WARMUP} warm-up + {RUNS} runs each, interleaved)", flush=True)
    load_before = os.getloadavg()[0]
    lat = latencies({f: s[True] for f, s in sessions.items()}, inp, xv[:1])
    load_after = os.getloadavg()[0]
    # fp32 reference outputs, one per optimisation level, so each level is compared like for like.
    ref = {opt: run_all(sessions["fp32"][opt], inp, xv) for opt in (True, False)} if "fp32" in sessions else None
    variants = []
    for f in FORMS:
        path = paths[f]
        v = {"form": f, "file": os.path.relpath(path, ROOT), "manifest": os.path.relpath(path[:-5] + ".toml", ROOT),
             "sha256": sha256(path), "bytes": os.path.getsize(path), "ops": {}, "opset": {}}
        try:
            model = onnx.load(path)
            v["ops"], v["opset"] = op_counts(model), {o.domain or "ai.onnx": o.version for o in model.opset_import}
        except Exception:  # noqa: BLE001 - an unreadable file is already a load failure below
            pass
        if f in facts["activation_type"]:
            v["activation_type"], v["weight_type"] = facts["activation_type"][f], "QInt8"
        if f not in sessions:
            v["error"] = "onnxruntime cannot load it"
            variants.append(v)
            continue
        v["ort_optimized_ops"] = ort_ops[f]
        v["ort"] = lat[f]
        try:
            for opt, key in ((True, "ort_enable_all"), (False, "ort_disable_all")):
                outs = run_all(sessions[f][opt], inp, xv)
                v[key] = {"accuracy": accuracy(outs, yv, m)}
                if ref is not None:
                    v[key]["agreement"] = agreement(outs, ref[opt], m)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{name}-{f}: onnxruntime cannot run it: {e}")
            v["error"] = f"onnxruntime cannot run it: {e}"
        # The gate is on ORT as deployed (default optimisation); the other level is reported.
        agree = v.get("ort_enable_all", {}).get("agreement", {}).get("top1_agreement")
        if f in STORAGE_FORMS and agree is not None and agree < MIN_AGREEMENT:
            failures.append(f"{name}-{f}: top-1 agreement with fp32 {agree:.2%} < {MIN_AGREEMENT:.0%}")
        variants.append(v)
        print(f"  {f}: done", flush=True)
    entry = {"source": facts["source"], "base_manifest": f"models/{name}.toml", "opset": facts["opset"],
             "quant_pre_process": facts["pre_process"], "calibration": facts["calibration"],
             "held_out": {"kind": spec["kind"], "seed": spec["val_seed"], "count": spec["val_count"],
                          "objects": int((yv[..., 0] >= 0).sum()) if spec["kind"] == "detect" else None},
             "load_average_1min": [load_before, load_after], "variants": variants}
    return entry, failures


# ---------------------------------------------------------------- reporting

def fmt_acc(a):
    if "top1" in a:
        return f"top-1 {a['top1'] * 100:.2f} %"
    return f"mAP50 {a['map50'] * 100:.1f}, 50:95 {a['map50_95'] * 100:.1f}"


def fmt_diff(ag, key):
    """Max |diff| with its size relative to the largest fp32 output."""
    if key not in ag:
        return "-"
    return f"{ag[key]:.3g} ({ag[key] / ag['fp32_max_abs'] * 100:.2f} %)" if key == "max_abs_diff" else f"{ag[key]:.3g}"


def level_table(e, key, timed):
    """Markdown table of one optimisation level's results for one model."""
    fp32_bytes = next((v["bytes"] for v in e["variants"] if v["form"] == "fp32"), None)
    head = "| variant | bytes | vs fp32 |" + (" ORT median ms (p10-p90) |" if timed else "")
    head += " accuracy | top-1 agree with fp32 | max abs diff raw (of max fp32) | max abs diff scores |"
    lines = [head, "|" + "---|" * head.count(" |")]
    for v in e["variants"]:
        row = f"| {v['form']} | {v['bytes']} | {v['bytes'] / fp32_bytes:.2f}x |"
        if "error" in v or key not in v:
            lines.append(row + f" FAILED: {v.get('error', '')} |")
            continue
        if timed:
            o = v["ort"]
            row += f" {o['median_ms']:.3f} ({o['p10_ms']:.3f}-{o['p90_ms']:.3f}) |"
        r = v[key]
        ag = r.get("agreement", {})
        lines.append(row + f" {fmt_acc(r['accuracy'])} | {ag.get('top1_agreement', float('nan')) * 100:.2f} % |"
                     f" {fmt_diff(ag, 'max_abs_diff')} | {fmt_diff(ag, 'max_abs_diff_scores')} |")
    return lines


def report_text(report):
    """The human-readable report: per model, a table per ORT optimisation level, then the ops."""
    v_ = report["versions"]
    lines = [f"# tools/variants.py  ({report['generated']})",
             f"# onnxruntime {v_['onnxruntime']}, onnx {v_['onnx']}, pycocotools {v_['pycocotools']}, "
             f"numpy {v_['numpy']}; {report['machine']}"]
    for name, e in report["models"].items():
        h, c = e["held_out"], e["calibration"]
        what = (f"{h['count']} held-out renders (seed {h['seed']})" if h["kind"] == "classify"
                else f"{h['count']} held-out scenes (seed {h['seed']}, {h['objects']} objects)")
        lines += ["", f"## {name}", "",
                  f"Source {e['source']}; accuracy on {what}; calibration {c['count']} renders of seed {c['seed']} "
                  f"({c['method']}); quant_pre_process {'used' if e['quant_pre_process'] else 'not needed'}; "
                  f"1-min load average {e['load_average_1min'][0]:.2f} -> {e['load_average_1min'][1]:.2f} while timing.",
                  "", "onnxruntime as deployed (ORT_ENABLE_ALL, 1 thread):", ""]
        lines += level_table(e, "ort_enable_all", True)
        lines += ["", "onnxruntime without graph optimisation (ORT_DISABLE_ALL: every op runs as written, "
                      "DequantizeLinear and Cast in float, nothing fused into int8 kernels; closer to tract, which "
                      "folds weight dequantization at load):", ""]
        lines += level_table(e, "ort_disable_all", False)
        lines.append("")
        for v in e["variants"]:
            extra = f"; activations {v['activation_type']}, weights {v['weight_type']}" if "activation_type" in v else ""
            lines.append(f"- {v['form']}: {', '.join(f'{k} {n}' for k, n in v['ops'].items())}{extra}")
            if "ort_optimized_ops" in v:
                lines.append(f"  ORT runs it as: {', '.join(f'{k} {n}' for k, n in v['ort_optimized_ops'].items())}")
    if report.get("failures"):
        lines += ["", "FAILURES:"] + [f"- {f}" for f in report["failures"]]
    lines += ["", "Settings: " + report["settings"]]
    return "\n".join(lines) + "\n"


def merge(path, fresh):
    """Earlier report entries for models not measured now, if their files are unchanged."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        old = json.load(f).get("models", {})
    kept = {}
    for name, e in old.items():
        if name in fresh:
            continue
        if all(os.path.exists(os.path.join(ROOT, v["file"])) and sha256(os.path.join(ROOT, v["file"])) == v["sha256"]
               for v in e["variants"]):
            kept[name] = e
    return kept


def versions():
    import importlib.metadata as md

    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__, "numpy": np.__version__,
            "pycocotools": md.version("pycocotools"), "python": platform.python_version()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=list(BASES), action="append", help="one base model (repeatable; default both)")
    ap.add_argument("--out", default=os.path.join(MODELS, "variants"), help="output folder (default models/variants)")
    ap.add_argument("--work", default="/tmp/lookout-build", help="cache for rendered data sets")
    args = ap.parse_args()
    names = args.model or list(BASES)
    out = os.path.abspath(args.out)
    fresh, failures = {}, []
    for name in names:
        t0 = time.time()
        print(f"{name}: building variants from {os.path.relpath(source_path(name), ROOT)}", flush=True)
        facts = build(name, out, args.work)
        fresh[name], fails = evaluate(name, facts, args.work)
        failures += fails
        print(f"{name}: {time.time() - t0:.0f}s", flush=True)
    json_path = os.path.join(out, "variants-report.json")
    models = merge(json_path, fresh)
    models.update(fresh)
    report = {
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python3 tools/variants.py " + " ".join(sys.argv[1:]),
        "versions": versions(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "settings": (f"onnxruntime CPU, intra_op_num_threads=1, ORT_ENABLE_ALL for latency and the main accuracy, "
                     f"{WARMUP} warm-up + {RUNS} timed runs on one held-out input, variants interleaved in rotating order; "
                     f"second table = ORT_DISABLE_ALL (ops run as written, no int8 kernel fusion). "
                     f"Detector mAP: pycocotools COCOeval bbox, IoU 0.50:0.05:0.95, area 'all', maxDets 100, "
                     f"detections from reference.candidates + class-aware nms (IoU from the manifest) at score "
                     f">= {MAP_SCORE_TH}, <= {MAP_MAX_DET} per image, boxes and ground truth in model-input pixels. "
                     f"Detector top-1 agree = same best class on the candidates fp32 scores >= the manifest "
                     f"threshold. Fails if ORT cannot load a variant or fp32/fp16/int8-weights agree < "
                     f"{MIN_AGREEMENT:.0%}."),
        "models": models,
        "failures": failures,
    }
    text = report_text(report)
    with open(json_path, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    with open(os.path.join(out, "variants-report.txt"), "w") as f:
        f.write(text)
    print()
    print(text)
    print("wrote", ", ".join(os.path.relpath(os.path.join(out, p), ROOT)
                             for p in sorted(os.listdir(out)) if p.endswith((".onnx", ".toml", ".txt", ".json"))))
    if failures:
        raise SystemExit("FAILED:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
