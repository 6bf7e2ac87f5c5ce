#!/usr/bin/env python3
"""Steps of scripts/export-speed (the speed suite). Not meant to be run by hand.

    export_speed.py export   OUT_DIR [ARCH...]         export venv, offline: every form of every
                                                       architecture (or of those named) into
                                                       OUT_DIR/<arch>-<form>/
    export_speed.py record   ONNX ARCH FORM FP32 HOW   export venv: the metadata JSON of a file made
                                                       by something else (lookout's int8-weights form)
    export_speed.py imports  MODELS                    stdlib only: per model, a tab-separated line
                                                       "<arch> <form> <onnx> <lookout import flags>"
    export_speed.py summary  MODELS                    stdlib only: one line per model

Architectures (random weights, seeded; nothing downloaded): torchvision mobilenet_v2 and
mobilenet_v3_small (1000 classes, torch.onnx.export as tools/export_compat.py does it, opset 17,
input "input" [1,3,224,224]), Ultralytics YOLOv8n at 320 and 640 and YOLOv8s at 640 (detect,
exported by tools/export_compat.py's Exporter.ultralytics: Ultralytics' defaults, opset 18,
onnxslim, input "images"). Forms: fp32 (as exported), qdq and qop (onnxruntime quantize_static,
QDQ / QOperator, per-channel int8 weights, int8 activations, MinMax on 16 synthetic images),
qlinear (QOperator limited to the operators whose integer forms are standard ONNX: Conv and
MatMul, every Gemm first rewritten as MatMul + Add; only ai.onnx operators, which tract runs),
f16 (the same Gemm rewrite, then onnxconverter-common convert_float_to_float16,
keep_io_types=True: float16 inside, float32 input and outputs). lookout itself makes the
int8-weights form (`lookout import --int8-weights`).

Each <arch>-<form>/ holds <arch>-<form>.onnx and <arch>-<form>.json: architecture, form, how it
was made, tool versions, seed, MACs and parameters (tools/count_macs.py on the fp32 graph), bytes,
sha256, operators, onnxruntime's output shapes on the test input of tools/export_compat.py, the
largest difference from the fp32 form's outputs on that input, and onnxruntime's one-thread
latency here. A form that cannot be made leaves <arch>-<form>.json with "error" and no .onnx.
The classifiers also get labels.txt (the ImageNet names of the ultralytics wheel), which
`lookout import` reads.
"""
import json
import os
import shutil
import sys

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)
import export_compat as ec  # noqa: E402 - the compat suite's helpers, shared rather than copied

SEED = ec.SEED
FORMS = ["fp32", "qdq", "qop", "qlinear", "f16"]
# arch -> how the fp32 graph is made. The order is the export order: cheapest first.
ARCHS = {
    "mobilenetv3-224": {"torchvision": "mobilenet_v3_small", "size": 224, "expect": {"logits": [1, 1000]}},
    "mobilenetv2-224": {"torchvision": "mobilenet_v2", "size": 224, "expect": {"logits": [1, 1000]}},
    "yolov8n-320": {"yaml": "yolov8n.yaml", "size": 320, "expect": {"output0": [1, 84, 2100]}},
    "yolov8n-640": {"yaml": "yolov8n.yaml", "size": 640, "expect": {"output0": [1, 84, 8400]}},
    "yolov8s-640": {"yaml": "yolov8s.yaml", "size": 640, "expect": {"output0": [1, 84, 8400]}},
}
CALIBRATION_IMAGES = 16
TIMED_RUNS = 20
WARMUP_RUNS = 5
TOOL_PACKAGES = ["torch", "torchvision", "ultralytics", "onnx", "onnxruntime", "onnxslim", "numpy",
                 "onnxconverter-common"]
# How the classifiers were trained to see a frame (torchvision's ImageNet recipe), and their
# decoder (else a guess); the YOLO files carry all of it in Ultralytics' metadata_props.
CLASSIFIER_FLAGS = ("--decoder classify --resize center-crop --color rgb --scale 0.00392156862745098 "
                    "--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225")
QUANT_CALL = ("onnxruntime.quantization.quantize_static(fp32, out, reader, quant_format=QuantFormat.{fmt}, "
              "per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, "
              "calibrate_method=CalibrationMethod.MinMax{ops}), "
              "no pre-processing; calibration: {calib}")
# The operators whose QOperator forms onnxruntime writes in the standard ONNX domain: Conv ->
# QLinearConv, MatMul -> QLinearMatMul. Its Gemm becomes com.microsoft QGemm (whatever the
# attributes), Add/Mul/Concat/Sigmoid/Softmax/GlobalAveragePool com.microsoft QLinear* operators
# (none of which tract runs); left out, they stay float32 between DequantizeLinear and
# QuantizeLinear.
QLINEAR_OPS = ["Conv", "MatMul"]
GEMM_REWRITE = ("every Gemm with alpha = beta = 1, transA = 0 and a constant B rewritten as MatMul + Add "
                "(B transposed where transB = 1; the same function in float32)")
QLINEAR_CALL = (GEMM_REWRITE + " (onnxruntime's QOperator Gemm is com.microsoft QGemm; a MatMul becomes the "
                "standard QLinearMatMul), then " + QUANT_CALL.replace("{fmt}", "QOperator").replace(
                    "{ops}", f", op_types_to_quantize={QLINEAR_OPS}") +
                "; every other operator float32, with QuantizeLinear/DequantizeLinear around the integer ones; "
                "checked: no operator and no opset outside ai.onnx")
F16_CALL = (GEMM_REWRITE + " (tract-onnx 0.23.9 cannot load a float16 Gemm with a bias input or alpha != 1: it "
            "scales them by float32 constants, and its Gemm comes out float32), then "
            "onnxconverter_common.float16.convert_float_to_float16(model, keep_io_types=True) "
            "(its default op_block_list; float16 computation, float32 input and outputs), then every "
            "value_info entry of a tensor made by a Cast given that Cast's element type (the converter leaves "
            "float32 there for the Casts it adds after the float32 Resize of YOLOv8)")


def fail(step, message):
    sys.exit(f"export-speed: {step}: {message}")


def name_of(arch, form):
    return f"{arch}-{form}"


def tool_versions():
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for p in TOOL_PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


# ---------------------------------------------------------------------------------------------
# onnxruntime: outputs, disagreement, latency (export venv)

def ort_outputs(np, path):
    """onnxruntime's outputs on the compat suite's test input (ORT_DISABLE_ALL, one thread)."""
    sess = ec.ort_session(path)
    first = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in first.shape]
    x = ec.test_input(np, shape)
    outs = sess.run(None, {first.name: x})
    return first.name, shape, {o.name: v for o, v in zip(sess.get_outputs(), outs)}


def ort_latency(np, path, input_name, shape):
    """tools/ort_reference_ms.py's timing: onnxruntime's default graph optimizations, one intra-op
    and one inter-op thread, warm-up runs, then the median of the timed runs."""
    import statistics
    import time

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feed = {input_name: ec.test_input(np, shape)}
    for _ in range(WARMUP_RUNS):
        sess.run(None, feed)
    times = []
    for _ in range(TIMED_RUNS):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3),
            "how": f"median of {TIMED_RUNS} runs after {WARMUP_RUNS} warm-up runs, onnxruntime's default "
                   "graph optimizations (ORT_ENABLE_ALL), CPUExecutionProvider, 1 intra-op and 1 inter-op "
                   "thread, wall clock on the exporting machine (indicative only)"}


def disagreement(np, got, ref):
    """Per output: the largest and mean absolute difference from the fp32 form's output, and the
    largest |value| of the fp32 output; for a YOLOv8 head [1, 4+classes, anchors] also split into
    the box rows (pixels) and the class-score rows."""
    out = {}
    for name, r in ref.items():
        g = got.get(name)
        if g is None or g.shape != r.shape:
            out[name] = {"error": f"shape {None if g is None else list(g.shape)}, fp32 {list(r.shape)}"}
            continue
        d = np.abs(g.astype(np.float64) - r.astype(np.float64))
        entry = {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
                 "max_abs_fp32": float(np.abs(r).max())}
        if r.ndim == 3 and r.shape[1] == 84:
            for part, sl in (("boxes", slice(0, 4)), ("scores", slice(4, None))):
                entry[part] = {"max_abs_diff": float(d[:, sl].max()), "max_abs_fp32": float(np.abs(r[:, sl]).max())}
        out[name] = entry
    return out


def write_record(np, onnx, arch, form, path, made, source, fp32_outputs, macs):
    """Writes <arch>-<form>.json beside path; returns the outputs onnxruntime gave."""
    step = f"record {name_of(arch, form)}"
    try:
        onnx.checker.check_model(path, full_check=True)
    except Exception as e:  # noqa: BLE001 - any checker complaint is reported the same way
        fail(step, f"{path} fails onnx.checker: {type(e).__name__}: {e}")
    graph = ec.describe_graph(onnx, onnx.load(path, load_external_data=False))
    try:
        input_name, shape, outs = ort_outputs(np, path)
        latency = ort_latency(np, path, input_name, shape)
    except Exception as e:  # noqa: BLE001
        fail(step, f"onnxruntime cannot run {path}: {type(e).__name__}: {e}")
    rec = {
        "architecture": arch,
        "form": form,
        "file": os.path.basename(path),
        "bytes": os.path.getsize(path),
        "sha256": ec.sha256_file(path),
        "architecture_source": source,
        "made": made,
        "seed": SEED,
        "macs": macs["macs"],
        "parameters": macs["parameters"],
        "macs_note": macs["note"],
        "tools": tool_versions(),
        "graph": {k: graph[k] for k in ("producer_name", "producer_version", "opset_import", "inputs", "outputs",
                                        "nodes", "op_types", "initializers")},
        "test_input": {"shape": shape, "formula": ec.INPUT_FORMULA, "numpy": ec.INPUT_NUMPY},
        "onnxruntime": {
            "version": __import__("onnxruntime").__version__,
            "loads": True,
            "outputs": {k: {"shape": list(v.shape), "dtype": v.dtype.name, "min": float(v.min()),
                            "max": float(v.max())} for k, v in outs.items()},
            "vs_fp32": None if fp32_outputs is None else disagreement(np, outs, fp32_outputs),
            "vs_fp32_note": ("random weights: agreement says how far this form computes the same function, "
                             "not how accurate it would be; the figures are for speed comparisons only"),
            "latency": latency,
        },
    }
    ec.write_json(os.path.splitext(path)[0] + ".json", rec)
    return outs


def count_macs(path):
    import count_macs as cm

    try:
        macs, params = cm.count(path)
        return {"macs": macs, "parameters": params,
                "note": "tools/count_macs.py on the fp32 graph (Conv, Gemm, MatMul); the same network in every form"}
    except (SystemExit, Exception) as e:  # noqa: BLE001 - a count is a nicety, never a failure
        return {"macs": None, "parameters": None, "note": f"tools/count_macs.py could not count: {e}"}


# ---------------------------------------------------------------------------------------------
# export (export venv, offline)

# What Ultralytics, torch and matplotlib read at import time: offline, and writing nowhere else.
def offline_env(work):
    return {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_CONFIG_DIR": os.path.join(work, "config"),
            "MPLCONFIGDIR": os.path.join(work, "matplotlib"), "TORCH_HOME": os.path.join(work, "torch"),
            "PIP_NO_INDEX": "1", "HF_HUB_OFFLINE": "1"}


def calibration(np, spec):
    """export_compat's 16 synthetic images at the model's size: ImageNet-normalised for the
    torchvision classifiers, back in [0, 1] (pixel / 255, Ultralytics' convention) for YOLO."""
    images = ec.calibration_images(np, CALIBRATION_IMAGES, spec["size"])
    if "yaml" not in spec:
        return images, ec.CALIBRATION
    mean = np.array(ec.IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.array(ec.IMAGENET_STD, np.float32)[:, None, None]
    images = [np.clip(x * std + mean, 0, 1).astype(np.float32) for x in images]
    size = spec["size"]
    return images, (ec.CALIBRATION.replace("224x224", f"{size}x{size}").replace(
        "then normalised by the ImageNet mean and std, as torchvision's classifiers expect",
        "left in [0, 1] (pixel / 255), as Ultralytics' models expect"))


def quantize(src, dst, fmt, input_name, images, op_types=None):
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static

    class Feed(CalibrationDataReader):
        def __init__(self):
            self.batches = ({input_name: x} for x in images)

        def get_next(self):
            return next(self.batches, None)

    quantize_static(src, dst, Feed(), quant_format=getattr(QuantFormat, fmt), per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=op_types)


def gemm_to_matmul(m):
    """Rewrites in place every Gemm that is a plain product plus bias (alpha = beta = 1, transA = 0,
    B an initializer) as MatMul(A, B) + Add(C), B transposed where transB = 1 (a new initializer
    when another node reads B too); Add broadcasts C as Gemm does. The Add keeps the Gemm's
    output name. Returns how many were rewritten; any other Gemm is left."""
    import collections

    from onnx import helper, numpy_helper

    g = m.graph
    inits = {t.name: t for t in g.initializer}
    readers = collections.Counter(i for n in g.node for i in n.input)
    nodes, rewritten = [], 0
    for n in g.node:
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        if (n.op_type != "Gemm" or n.domain not in ("", "ai.onnx") or a.get("alpha", 1.0) != 1.0
                or a.get("beta", 1.0) != 1.0 or a.get("transA", 0) or n.input[1] not in inits):
            nodes.append(n)
            continue
        b = n.input[1]
        if a.get("transB", 0):
            t = numpy_helper.from_array(numpy_helper.to_array(inits[b]).T.copy(), b)
            if readers[b] > 1:
                t.name = b = f"{b}.transposed.{rewritten}"
                g.initializer.append(t)
            else:
                inits[b].CopyFrom(t)
        bias = n.input[2] if len(n.input) > 2 and n.input[2] else None
        product = n.output[0] + ".matmul" if bias else n.output[0]
        named = lambda suffix: f"{n.name}.{suffix}" if n.name else ""  # noqa: E731
        nodes.append(helper.make_node("MatMul", [n.input[0], b], [product], name=named("matmul")))
        if bias:
            nodes.append(helper.make_node("Add", [product, bias], [n.output[0]], name=named("bias")))
        rewritten += 1
    del g.node[:]
    g.node.extend(nodes)
    return rewritten


def standard_domain_only(onnx, path):
    """Raises unless every operator and every opset of the file is the standard ai.onnx domain."""
    m = onnx.load(path, load_external_data=False)
    ops = sorted({f"{n.domain}::{n.op_type}" for n in m.graph.node if n.domain not in ("", "ai.onnx")})
    opsets = sorted(o.domain for o in m.opset_import if o.domain not in ("", "ai.onnx"))
    if ops or opsets:
        raise ValueError(f"operators outside ai.onnx: {ops}, opsets: {opsets}")


def to_qlinear(src, dst, work, input_name, images):
    """The Gemm rewrite, then QOperator quantization of QLINEAR_OPS only, then the domain check."""
    import onnx

    m = onnx.load(src)
    gemm_to_matmul(m)
    tmp = os.path.join(work, os.path.basename(dst) + ".matmul.onnx")
    onnx.save_model(m, tmp)
    try:
        quantize(tmp, dst, "QOperator", input_name, images, QLINEAR_OPS)
    finally:
        os.remove(tmp)
    standard_domain_only(onnx, dst)


def to_f16(src, dst):
    """The Gemm rewrite (a float16 Gemm with a bias does not load in tract-onnx 0.23.9: Gemm::wire
    multiplies the bias by beta as a float32 constant, even for beta = 1, and the float32 product
    makes the Gemm's output float32 where float16 was inferred; tools/f16_gemm_repro.py), then
    convert_float_to_float16, then one repair: around the operators it keeps in float32 (its
    default op_block_list: Resize among them, in every YOLOv8 neck) it adds Cast nodes but leaves
    the graph's value_info stating the old element type of the tensors those Casts now make
    (float32 where the Cast makes float16), which shape inference rejects ("inputs has
    inconsistent type" at the Concat after the Resize). Each such entry is given its Cast's type."""
    import onnx
    from onnxconverter_common import float16

    m = onnx.load(src)
    gemm_to_matmul(m)
    m = float16.convert_float_to_float16(m, keep_io_types=True)
    cast_to = {n.output[0]: next(a.i for a in n.attribute if a.name == "to")
               for n in m.graph.node if n.op_type == "Cast"}
    for v in m.graph.value_info:
        if v.name in cast_to and v.type.tensor_type.elem_type != cast_to[v.name]:
            v.type.tensor_type.elem_type = cast_to[v.name]
    onnx.save_model(m, dst)


def export_fp32(exporter, arch, spec, out):
    """The fp32 file at out/<arch>-fp32/<arch>-fp32.onnx; returns how the architecture was made."""
    import torch

    name = name_of(arch, "fp32")
    if "yaml" in spec:
        # Exporter.ultralytics, with this model as one more row of the compat suite's table.
        ec.ULTRALYTICS[name] = (spec["yaml"], {}, spec["size"], "coco.yaml", spec["expect"])
        rec = exporter.ultralytics(name, mini=False)
        os.remove(os.path.join(out, name, name + ".ort.json"))  # its record is written here, with more in it
        return rec["source"]
    import torchvision

    torch.manual_seed(SEED)
    net = getattr(torchvision.models, spec["torchvision"])(weights=None)
    ec.perturb(torch, net)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(exporter.work, name + ".onnx")
    exporter.torch_export(net.eval(), tmp, None)
    os.replace(tmp, os.path.join(d, name + ".onnx"))
    return {
        "package": "torchvision", "version": ec.PINS["torchvision"], "licence": ec.LICENCES["torchvision"],
        "architecture": f"torchvision.models.{spec['torchvision']}(weights=None) (1000 classes)",
        "exporter": "torch.onnx.export(net.eval(), torch.zeros(1, 3, 224, 224), f, dynamo=False, opset_version=17, "
                    "input_names=['input'], output_names=['logits'], do_constant_folding=True) "
                    "(tools/export_compat.py Exporter.torch_export)",
        "weights": f"random: torch.manual_seed({SEED}) before building, then every BatchNorm's statistics and "
                   "affine parameters and every all-zero bias drawn uniformly (tools/export_compat.py perturb)",
    }


def export_arch(np, onnx, exporter, arch, out, imagenet_names):
    spec = ARCHS[arch]
    source = export_fp32(exporter, arch, spec, out)
    fp32 = os.path.join(out, name_of(arch, "fp32"), name_of(arch, "fp32") + ".onnx")
    macs = count_macs(fp32)
    ref = write_record(np, onnx, arch, "fp32", fp32, source["exporter"], source, None, macs)
    print(f"exported {name_of(arch, 'fp32')}", flush=True)
    got = {o["name"]: o["shape"] for o in ec.describe_graph(onnx, onnx.load(fp32))["outputs"]}
    if got != spec["expect"]:
        fail(f"export {arch}", f"{fp32} has outputs {got}, expected {spec['expect']}")
    input_name = "images" if "yaml" in spec else "input"
    images, calib = calibration(np, spec)
    failures = []
    for form in FORMS[1:]:
        name = name_of(arch, form)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name + ".onnx")
        tmp = os.path.join(exporter.work, name + ".onnx")
        if form == "f16":
            made, make = F16_CALL, lambda: to_f16(fp32, tmp)  # noqa: E731
        elif form == "qlinear":
            made = QLINEAR_CALL.format(calib=calib)
            make = lambda: to_qlinear(fp32, tmp, exporter.work, input_name, images)  # noqa: E731
        else:
            fmt = "QDQ" if form == "qdq" else "QOperator"
            made = QUANT_CALL.format(fmt=fmt, ops="", calib=calib)
            make = lambda: quantize(fp32, tmp, fmt, input_name, images)  # noqa: E731
        try:
            make()
            onnx.checker.check_model(tmp, full_check=True)
            os.replace(tmp, path)
            write_record(np, onnx, arch, form, path, made, source, ref, macs)
            print(f"exported {name}", flush=True)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - one form failing leaves the others
            msg = f"{type(e).__name__}: {e}".strip()[:2000]
            if os.path.exists(path):
                os.remove(path)
            ec.write_json(os.path.join(d, name + ".json"), {
                "architecture": arch, "form": form, "error": msg, "made": made, "tools": tool_versions()})
            failures.append(name)
            print(f"FAILED {name}: {msg.splitlines()[0] if msg else ''}", flush=True)
    if "torchvision" in spec:
        for form in FORMS:
            d = os.path.join(out, name_of(arch, form))
            ec.write_atomic(os.path.join(d, "labels.txt"), ("\n".join(imagenet_names) + "\n").encode())
    return failures


def export(out, archs):
    step = "export"
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        fail(step, f"unknown architectures {unknown}; known: {list(ARCHS)}")
    work = os.path.join(out, ".work")
    os.makedirs(work, exist_ok=True)
    os.environ.update(offline_env(work))  # before anything imports ultralytics
    guard = ec.NetworkGuard()
    import importlib.metadata as md

    wrong = {k: md.version(k) for k, v in ec.PINS.items() if md.version(k) != v}
    if wrong:
        fail(step, f"installed {wrong}, tools/export_compat.py is written for {ec.PINS}")
    import numpy as np
    import onnx
    import torch

    torch.set_num_threads(1)
    from ultralytics.utils import ROOT, SETTINGS, YAML

    SETTINGS.update(sync=False)
    names = YAML.load(ROOT / "cfg" / "datasets" / "ImageNet.yaml")["names"]
    imagenet_names = [names[i] for i in range(len(names))]
    failures = []
    cwd = os.getcwd()
    os.chdir(work)  # Ultralytics writes its export into the working folder
    try:
        exporter = ec.Exporter(out)
        for arch in archs or list(ARCHS):
            failures += export_arch(np, onnx, exporter, arch, out, imagenet_names)
    finally:
        os.chdir(cwd)
    if guard.attempts:
        fail(step, f"something tried to reach the network: {guard.attempts[:5]}")
    shutil.rmtree(work)
    print(f"done: {len(failures)} form(s) could not be made" + (f": {', '.join(failures)}" if failures else ""))


# ---------------------------------------------------------------------------------------------
# record (export venv): a form made by lookout

def record(path, arch, form, fp32, how):
    import numpy as np
    import onnx

    with open(os.path.splitext(fp32)[0] + ".json") as f:
        base = json.load(f)
    _, _, ref = ort_outputs(np, fp32)
    macs = {"macs": base["macs"], "parameters": base["parameters"], "note": base["macs_note"]}
    write_record(np, onnx, arch, form, path, how, base["architecture_source"], ref, macs)


# ---------------------------------------------------------------------------------------------
# imports, summary (stdlib only)

def records(models):
    out = []
    if not os.path.isdir(models):
        return out
    for d in sorted(os.listdir(models)):
        for f in sorted(os.listdir(os.path.join(models, d))):
            if f.endswith(".json"):
                with open(os.path.join(models, d, f)) as fh:
                    out.append((d, json.load(fh)))
    order = {a: i for i, a in enumerate(ARCHS)}
    forms = FORMS + ["int8-weights"]
    out.sort(key=lambda r: (order.get(r[1]["architecture"], 99), forms.index(r[1]["form"]) if r[1]["form"] in forms else 99))
    return out


def imports(models):
    for d, rec in records(models):
        if "error" in rec or rec["form"] == "int8-weights":
            continue
        flags = CLASSIFIER_FLAGS if "yaml" not in ARCHS[rec["architecture"]] else ""
        print(f"{rec['architecture']}\t{rec['form']}\t{os.path.join(models, d, rec['file'])}\t{flags}")


def summary(models):
    rows = records(models)
    if not rows:
        fail("summary", f"no models in {models}")
    for d, rec in rows:
        name = name_of(rec["architecture"], rec["form"])
        if "error" in rec:
            print(f"{name}: FAILED: {rec['error'].splitlines()[0]}")
            continue
        ort = rec["onnxruntime"]
        outs = ", ".join(f"{k} {v['shape']}" for k, v in ort["outputs"].items())
        diff = ""
        if ort["vs_fp32"]:
            parts = []
            for k, v in ort["vs_fp32"].items():
                if "error" in v:
                    parts.append(f"{k}: {v['error']}")
                    continue
                p = f"{k} max |diff| {v['max_abs_diff']:.3g} of {v['max_abs_fp32']:.3g}"
                if "scores" in v:
                    p += f" (scores {v['scores']['max_abs_diff']:.3g}, boxes {v['boxes']['max_abs_diff']:.3g} px)"
                parts.append(p)
            diff = "; vs fp32: " + "; ".join(parts)
        macs = f"{rec['macs'] / 1e6:.0f} M MACs, " if rec.get("macs") else ""
        print(f"{name}: {rec['bytes']} B, {macs}{rec['graph']['nodes']} nodes, out {outs}, "
              f"onnxruntime 1 thread {ort['latency']['median_ms']:.2f} ms{diff}")


def main():
    cmds = {"export": (export, None), "record": (record, 5), "imports": (imports, 1), "summary": (summary, 1)}
    if len(sys.argv) < 3 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    fn, n = cmds[sys.argv[1]]
    if fn is export:
        return export(sys.argv[2], sys.argv[3:])
    if len(sys.argv) - 2 != n:
        sys.exit(__doc__)
    fn(*sys.argv[2:])


if __name__ == "__main__":
    main()
