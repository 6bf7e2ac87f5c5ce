#!/usr/bin/env python3
"""Steps of scripts/export-compat. Not meant to be run by hand.

    export_compat.py versions REQS               export venv: every pin of REQS installed, at exactly its version
    export_compat.py export   OUT_DIR            export venv, offline: every model into OUT_DIR/<name>/
    export_compat.py verify   DIR                export venv: onnxruntime loads and runs every model in DIR/*/
                                                 and gets the outputs its .ort.json records
    export_compat.py summary  MODELS FIXTURES    stdlib only: one line per model (bytes, opset, outputs, committed?)
    export_compat.py commit   MODELS FIXTURES    stdlib only: copies the models whose files are all <= 2 MB into
                                                 FIXTURES/<name>/, writes FIXTURES/SOURCES.md and SHA256SUMS

A model is a folder <name>/ holding <name>.onnx (and, for the external-data one, its .data file),
<name>.ort.json (what the file is, where it comes from, and onnxruntime's outputs on a test input
anyone can recreate without numpy), and for the MobileNetV3 ones labels.txt.

Every failure exits with a message that names the step and the file.
"""
import hashlib
import json
import os
import shutil
import sys

# What the files are made with; `export` refuses to run with anything else installed (the
# complete closure, with hashes, is tools/requirements-export.txt).
PINS = {"torch": "2.14.1", "torchvision": "0.29.2", "ultralytics": "8.4.190", "onnx": "1.23.2",
        "onnxruntime": "1.32.0", "onnxslim": "0.1.98", "numpy": "2.4.6"}
LICENCES = {"ultralytics": "AGPL-3.0", "torchvision": "BSD-3-Clause", "torch": "BSD-3-Clause",
            "onnxruntime": "MIT"}

# Only files up to this size are committed (tests/fixtures/compat/); bigger models get a "mini"
# twin: the same operator graph with far fewer channels.
COMMIT_LIMIT = 2_000_000
SEED = 0
MINI_WIDTH = 0.03125      # Ultralytics minis: `scales: n: [depth, 1/32, max_channels]` (n is 0.25)
MINI_CLS_CLASSES = 10     # and the classifier's: 10 classes, its 1280x1000 Linear alone is 5.1 MB
MOBILENET_CLASSES = 10
# MobileNetV3 minis: mobilenet_v3_small(width_mult=0.4, reduced_tail=True). Widths 0.25 to 0.35
# and 0.5 round 40 and 48 channels to the same count, which gives one more block a residual Add
# (another graph); 0.4 is the smallest width that keeps every block as it is. reduced_tail halves
# the last stage's channels (same operators), bringing the file from 1.1 MB to 0.5 MB.
MOBILENET_MINI = {"width_mult": 0.4, "reduced_tail": True}
LATENCY_RUNS = 20
FIRST_VALUES = 64
# Ultralytics stamps the export time into metadata_props["date"]; it is replaced by this constant
# so that an export is byte-reproducible (every other key is kept as Ultralytics wrote it).
FIXED_DATE = "1970-01-01T00:00:00+00:00"
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The test input: a golden-ratio (Weyl) sequence over the flat C-order index, 24-bit values that
# float32 holds exactly, so any language recreates it bit for bit.
INPUT_FORMULA = "x[i] = ((i * 0x9E3779B9) mod 2^32 >> 8) / 2^24 as float32, i = flat C-order index (values in [0, 1))"
INPUT_NUMPY = ("((np.arange(n, dtype=np.uint64) * 0x9E3779B9 % 2**32) >> 8).astype(np.float32)"
               " / np.float32(2**24), reshaped to the shape")
INPUT_RUST = "((i as u32).wrapping_mul(0x9E37_79B9) >> 8) as f32 / 16_777_216.0"

# Ultralytics models: name -> (architecture YAML shipped in the wheel, extra export arguments,
# imgsz, class names from the wheel's cfg/datasets/ file, expected output shapes).
ULTRALYTICS = {
    "yolov8n-det": ("yolov8n.yaml", {}, 320, "coco.yaml", {"output0": [1, 84, 2100]}),
    # nms=True wraps the model in Ultralytics' NMSModel (TopK/NonMaxSuppression inside the graph).
    # With random weights no class score comes near the default conf 0.25 (Ultralytics' head bias
    # init keeps them below 1e-3): onnxruntime's output is all zeros, the empty-detections path.
    "yolov8n-det-nms": ("yolov8n.yaml", {"nms": True}, 320, "coco.yaml", {"output0": [1, 300, 6]}),
    "yolov8n-pose": ("yolov8n-pose.yaml", {}, 320, "coco-pose.yaml", {"output0": [1, 56, 2100]}),
    # In Ultralytics 8.4 the end-to-end (one-to-one) head of YOLOv10 is exported only with
    # nms=False; the default (nms=None) exports its one-to-many head, [1, 84, 2100].
    "yolov10n": ("yolov10n.yaml", {"nms": False}, 320, "coco.yaml", {"output0": [1, 300, 6]}),
    "yolov8n-cls": ("yolov8n-cls.yaml", {}, 224, "ImageNet.yaml", {"output0": [1, 1000]}),
}
# MobileNetV3 models: name -> how the fp32 graph is exported or transformed.
MOBILENET = ["mobilenetv3-dynbatch", "mobilenetv3-dynhw", "mobilenetv3-external", "mobilenetv3-qdq",
             "mobilenetv3-qop"]
MOBILENET_SIZE = 224
# Extra onnxruntime runs beyond the canonical batch-1 one, for the symbolic dimensions.
EXTRA_RUNS = {"mobilenetv3-dynbatch": [[2, 3, 224, 224]], "mobilenetv3-dynhw": [[1, 3, 160, 256]]}


def fail(step, message):
    sys.exit(f"export-compat: {step}: {message}")


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def to_json(obj, indent=""):
    """JSON with one key per line, but lists of numbers or strings (shapes, values) on one line."""
    inner = indent + " "
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + to_json(v, inner) for v in obj) + "\n" + indent + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json(path, obj):
    write_atomic(path, (to_json(obj) + "\n").encode())


def model_dirs(root):
    """The model folders under root, by name: those holding <name>/<name>.ort.json."""
    if not os.path.isdir(root):
        return []
    return sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, d + ".ort.json")))


def load_record(root, name):
    path = os.path.join(root, name, name + ".ort.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail("read record", f"{path}: {e}")


# ---------------------------------------------------------------------------------------------
# versions

def versions(reqs):
    """Checks that the running interpreter has every `name==version` of REQS installed."""
    import importlib.metadata as md
    import re

    step = "check venv"
    wrong = []
    with open(reqs) as f:
        for line in f:
            m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line)
            if not m:
                continue
            name, want = m.groups()
            try:
                have = md.version(name)
            except md.PackageNotFoundError:
                have = None
            if have != want:
                wrong.append(f"{name} {have or 'missing'} (pinned {want})")
    if wrong:
        fail(step, f"{sys.prefix} does not match {reqs}: {', '.join(wrong)}")


# ---------------------------------------------------------------------------------------------
# export (export venv)

class NetworkGuard:
    """Refuses every connection and name lookup made from Python, and remembers them. The
    export must not touch the network: Ultralytics would fetch fonts, weights and update
    checks; torchvision weights are never asked for (weights=None)."""

    def __init__(self):
        import socket

        self.attempts = []

        def refuse(what):
            def f(*args, **kwargs):
                self.attempts.append(f"{what}{args[1:3] if what.startswith('socket.') else args[:2]}")
                raise OSError(f"export-compat: network access refused ({what})")
            return f

        socket.socket.connect = refuse("socket.connect")
        socket.socket.connect_ex = refuse("socket.connect_ex")
        socket.socket.sendto = refuse("socket.sendto")
        socket.getaddrinfo = refuse("getaddrinfo")
        socket.gethostbyname = refuse("gethostbyname")
        socket.create_connection = refuse("create_connection")


def test_input(np, shape):
    n = 1
    for d in shape:
        n *= d
    i = np.arange(n, dtype=np.uint64)
    return (((i * 0x9E3779B9) % 2**32) >> 8).astype(np.float32).reshape(shape) / np.float32(2**24)


def dims(value_info):
    t = value_info.type.tensor_type
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
            for d in t.shape.dim]


def describe_graph(onnx, model):
    import collections

    g = model.graph
    init_names = {t.name for t in g.initializer}
    dtype = lambda v: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name  # noqa: E731
    ops = collections.Counter((n.domain or "ai.onnx") + ":" + n.op_type if n.domain not in ("", "ai.onnx")
                              else n.op_type for n in g.node)
    return {
        "producer_name": model.producer_name,
        "producer_version": model.producer_version,
        "ir_version": model.ir_version,
        "opset_import": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "metadata_props": {p.key: p.value for p in model.metadata_props},
        "inputs": [{"name": v.name, "dtype": dtype(v), "shape": dims(v)} for v in g.input if v.name not in init_names],
        "outputs": [{"name": v.name, "dtype": dtype(v), "shape": dims(v)} for v in g.output],
        "nodes": len(g.node),
        "op_types": dict(sorted(ops.items())),
        "initializers": len(g.initializer),
        "value_info": len(g.value_info),
    }


def ort_session(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def summarise(np, arr):
    flat = np.ascontiguousarray(arr).reshape(-1)
    le = flat.astype(flat.dtype.newbyteorder("<"), copy=False)
    out = {"shape": list(arr.shape), "dtype": arr.dtype.name, "sha256": sha256_bytes(le.tobytes()),
           f"first{FIRST_VALUES}": [v.item() for v in flat[:FIRST_VALUES]]}
    if flat.size:
        out.update(min=flat.min().item(), max=flat.max().item(), mean=float(flat.astype(np.float64).mean()))
    return out


def ort_record(np, path, shapes):
    """onnxruntime's outputs on the test input at each shape, and its median latency on the first."""
    import statistics
    import time

    import onnxruntime as ort

    sess = ort_session(path)
    name = sess.get_inputs()[0].name
    runs = []
    latency = None
    for k, shape in enumerate(shapes):
        x = test_input(np, shape)
        outs = sess.run(None, {name: x})
        if k == 0:
            times = []
            for _ in range(LATENCY_RUNS):
                t = time.perf_counter()
                sess.run(None, {name: x})
                times.append((time.perf_counter() - t) * 1000)
            latency = round(statistics.median(times), 3)
        runs.append({
            "input": {"name": name, "shape": list(shape), "dtype": "float32",
                      "sha256": sha256_bytes(x.astype("<f4").tobytes()),
                      "first8": [v.item() for v in x.reshape(-1)[:8]]},
            "outputs": {o.name: summarise(np, v) for o, v in zip(sess.get_outputs(), outs)},
        })
    return runs, {
        "version": ort.__version__, "providers": ["CPUExecutionProvider"],
        "graph_optimization_level": "ORT_DISABLE_ALL", "intra_op_num_threads": 1, "inter_op_num_threads": 1,
        "execution_mode": "ORT_SEQUENTIAL",
        "latency": f"median of {LATENCY_RUNS} runs on the first input shape after one warm-up run; "
                   "wall clock on the machine that exported, indicative only",
        "median_ms": latency,
    }


def perturb(torch, model):
    """Gives every BatchNorm layer random statistics and affine parameters, and every all-zero
    convolution or linear bias random values (from the seeded global generator). Freshly built,
    BatchNorm is mean 0, var 1, weight 1, bias 0 and torchvision zeroes its biases: once folded
    by the exporters, every bias would be exactly zero (and torch's exporter would share one
    all-zero initializer through Identity nodes), so a test would never see a runtime mishandle
    a bias. Ultralytics' head biases (its bias_init) are not zero and are kept."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None and not m.bias.any():
                m.bias.uniform_(-0.1, 0.1)


class Exporter:
    def __init__(self, out):
        self.out = out
        self.work = os.path.join(out, ".work")
        self.records = []

    # -- common ----------------------------------------------------------------------------

    def finish(self, name, tmp_onnx, source, shapes=None, labels=None, external=None, expect=None,
               mini_of=None):
        """Moves an exported file into OUT/<name>/, checks it, runs onnxruntime and writes
        <name>.ort.json. `external`: the file was saved with its initializers in this file beside it."""
        import numpy as np
        import onnx

        step = f"export {name}"
        d = os.path.join(self.out, name)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name + ".onnx")
        files = [name + ".onnx"]
        if external:
            os.replace(os.path.join(os.path.dirname(tmp_onnx), external), os.path.join(d, external))
            files.append(external)
        os.replace(tmp_onnx, path)
        if labels:
            write_atomic(os.path.join(d, "labels.txt"), ("\n".join(labels) + "\n").encode())
            files.append("labels.txt")
        try:
            onnx.checker.check_model(path, full_check=True)
        except Exception as e:  # noqa: BLE001 - any checker complaint is reported the same way
            fail(step, f"{path} fails onnx.checker: {type(e).__name__}: {e}")
        model = onnx.load(path, load_external_data=False)
        graph = describe_graph(onnx, model)
        if expect:
            got = {o["name"]: o["shape"] for o in graph["outputs"]}
            if got != expect:
                fail(step, f"{path} has outputs {got}, expected {expect}")
        inp = graph["inputs"][0]["shape"]
        first = [1] + [d if isinstance(d, int) else MOBILENET_SIZE for d in inp[1:]]
        try:
            runs, ort_info = ort_record(np, path, [first] + (shapes or []))
        except Exception as e:  # noqa: BLE001
            fail(step, f"onnxruntime cannot run {path}: {type(e).__name__}: {e}")
        size = sum(os.path.getsize(os.path.join(d, f)) for f in files if f != "labels.txt")
        rec = {
            "name": name,
            "file": name + ".onnx",
            "external_data": external,
            "bytes": size,
            "files": {f: {"bytes": os.path.getsize(os.path.join(d, f)), "sha256": sha256_file(os.path.join(d, f))}
                      for f in files},
            "mini_of": mini_of,
            "mini": None,
            "source": source,
            "graph": graph,
            "test_input": {"formula": INPUT_FORMULA, "numpy": INPUT_NUMPY, "rust": INPUT_RUST,
                           "dynamic_dims": f"batch 1; a symbolic height or width is {MOBILENET_SIZE}"},
            "onnxruntime": ort_info,
            "runs": runs,
        }
        write_json(os.path.join(d, name + ".ort.json"), rec)
        self.records.append(rec)
        return rec

    def set_mini(self, full, mini):
        full["mini"] = mini["name"]
        write_json(os.path.join(self.out, full["name"], full["name"] + ".ort.json"), full)
        a, b = full["graph"]["op_types"], mini["graph"]["op_types"]
        if a != b or full["graph"]["nodes"] != mini["graph"]["nodes"]:
            fail(f"export {mini['name']}", f"the mini graph differs from {full['name']}'s: "
                 f"{mini['graph']['nodes']} nodes {b} vs {full['graph']['nodes']} nodes {a}")
        if any(f["bytes"] > COMMIT_LIMIT for f in mini["files"].values()):
            fail(f"export {mini['name']}", f"still has a file over {COMMIT_LIMIT} bytes: {mini['files']}")

    @staticmethod
    def too_big(rec):
        return any(f["bytes"] > COMMIT_LIMIT for f in rec["files"].values())

    # -- Ultralytics -----------------------------------------------------------------------

    def ultralytics(self, name, mini):
        import onnx
        import torch
        from ultralytics import YOLO
        from ultralytics.nn.tasks import yaml_model_load
        from ultralytics.utils import ROOT, YAML

        yaml_name, extra, imgsz, names_file, expect = ULTRALYTICS[name]
        out_name = name + ("-mini" if mini else "")
        step = f"export {out_name}"
        names = YAML.load(ROOT / "cfg" / "datasets" / names_file)["names"]
        names_note = f"model.names set from the wheel's cfg/datasets/{names_file}"
        cfg = yaml_name
        scaled = None
        if mini:
            d = yaml_model_load(yaml_name)
            d.pop("scale", None)
            d.pop("yaml_file", None)
            depth, _, max_channels = d["scales"]["n"]
            d["scales"] = {"n": [depth, MINI_WIDTH, max_channels]}
            scaled = f"scales: n: [{depth}, {MINI_WIDTH}, {max_channels}] (the YAML's n is [{depth}, 0.25, {max_channels}])"
            if d.get("nc", 0) > 100:
                d["nc"] = MINI_CLS_CLASSES
                names = dict(enumerate(CIFAR10))
                names_note = "model.names set to the 10 CIFAR-10 class names"
                scaled += f", nc: {MINI_CLS_CLASSES}"
                expect = {"output0": [1, MINI_CLS_CLASSES]}
            # The stem keeps the scale letter Ultralytics reads from the file name ('n').
            cfg = os.path.join(self.work, yaml_name.replace(".yaml", "-mini.yaml"))
            YAML.save(cfg, d)
        torch.manual_seed(SEED)
        model = YOLO(cfg)
        perturb(torch, model.model)
        model.model.names = {int(k): v for k, v in names.items()}
        args = dict(format="onnx", imgsz=imgsz, device="cpu", **extra)
        try:
            f = model.export(**args)
        except Exception as e:  # noqa: BLE001
            fail(step, f"YOLO({os.path.basename(cfg)!r}).export({args}) failed: {type(e).__name__}: {e}")
        if not f or not os.path.isfile(f):
            fail(step, f"YOLO({os.path.basename(cfg)!r}).export({args}) wrote no file")
        m = onnx.load(f)
        for p in m.metadata_props:
            if p.key == "date":
                p.value = FIXED_DATE
        tmp = os.path.join(self.work, "tmp.onnx")
        onnx.save_model(m, tmp)
        os.remove(f)
        call = f"YOLO({os.path.basename(cfg)!r}).export(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"
        source = {
            "package": "ultralytics", "version": PINS["ultralytics"], "licence": LICENCES["ultralytics"],
            "architecture": f"{yaml_name} shipped in the ultralytics wheel" + (f", with {scaled}" if scaled else ""),
            "exporter": call + " (torch.onnx.export, TorchScript exporter, then onnxslim; "
                        "opset, simplify and everything else at Ultralytics' defaults)",
            "weights": f"random: torch.manual_seed({SEED}) before YOLO(...), then every BatchNorm's statistics "
                       "and affine parameters and every all-zero bias drawn uniformly (perturb)",
            "names": names_note,
            "metadata": f"metadata_props as Ultralytics wrote them, except 'date', fixed to {FIXED_DATE}",
        }
        if extra.get("nms"):
            source["note"] = ("random weights score every class below 1e-3 (Ultralytics' head bias init), far "
                              "below the default conf 0.25 the NMS is exported with: the output is all zeros "
                              "(NonZero yields no element)")
        if name == "yolov10n":
            source["note"] = ("nms=False selects the end-to-end (one-to-one) head in Ultralytics 8.4; the "
                              "default, nms=None, would export the one-to-many head, output0 [1, 84, 2100]")
        return self.finish(out_name, tmp, source, expect=expect, mini_of=name if mini else None)

    # -- torchvision MobileNetV3 -----------------------------------------------------------

    def mobilenet_net(self, scale):
        import torch
        import torchvision

        torch.manual_seed(SEED)
        net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=MOBILENET_CLASSES, **scale)
        perturb(torch, net)
        return net.eval()

    def torch_export(self, net, path, dynamic):
        import torch

        x = torch.zeros(1, 3, MOBILENET_SIZE, MOBILENET_SIZE)
        kwargs = dict(dynamo=False, opset_version=17, input_names=["input"], output_names=["logits"],
                      do_constant_folding=True)
        if dynamic:
            kwargs["dynamic_axes"] = dynamic
        torch.onnx.export(net, (x,), path, **kwargs)

    def mobilenet(self, name, mini):
        import onnx

        scale = MOBILENET_MINI if mini else {}
        full_name = name
        name = name + ("-mini" if mini else "")
        step = f"export {name}"
        net = self.mobilenet_net(scale)
        tmp = os.path.join(self.work, name + ".onnx")
        static = os.path.join(self.work, f"static{'-mini' if mini else ''}.onnx")
        arch = (f"torchvision.models.mobilenet_v3_small(weights=None, num_classes={MOBILENET_CLASSES}"
                + "".join(f", {k}={v}" for k, v in scale.items()) + ")")
        export_call = ("torch.onnx.export(net.eval(), torch.zeros(1, 3, 224, 224), f, dynamo=False, opset_version=17, "
                       "input_names=['input'], output_names=['logits']{})")
        source = {
            "package": "torchvision", "version": PINS["torchvision"], "licence": LICENCES["torchvision"],
            "architecture": arch,
            "weights": f"random: torch.manual_seed({SEED}) before building, then every BatchNorm's statistics "
                       "and affine parameters and every all-zero bias drawn uniformly (perturb)",
            "labels": "labels.txt: the 10 CIFAR-10 class names (the network has 10 classes)",
        }
        expect = {"logits": [1, MOBILENET_CLASSES]}
        shapes = EXTRA_RUNS.get(full_name)
        try:
            if full_name == "mobilenetv3-dynbatch":
                dyn = {"input": {0: "batch"}, "logits": {0: "batch"}}
                self.torch_export(net, tmp, dyn)
                m = onnx.shape_inference.infer_shapes(onnx.load(tmp), strict_mode=True, data_prop=True)
                onnx.save_model(m, tmp)
                source["exporter"] = (export_call.format(", dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}}")
                                      + "; then onnx.shape_inference.infer_shapes(strict_mode=True, data_prop=True), "
                                      "so graph.value_info carries the symbolic batch")
                expect = {"logits": ["batch", MOBILENET_CLASSES]}
            elif full_name == "mobilenetv3-dynhw":
                dyn = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}
                self.torch_export(net, tmp, dyn)
                source["exporter"] = (export_call.format(", dynamic_axes={'input': {0: 'batch', 2: 'height', 3: 'width'}, "
                                                         "'logits': {0: 'batch'}}")
                                      + "; no shape inference afterwards (no graph.value_info)")
                expect = {"logits": ["batch", MOBILENET_CLASSES]}
            else:
                if not os.path.exists(static):
                    self.torch_export(net, static, None)
                static_call = export_call.format("")
                if full_name == "mobilenetv3-external":
                    data = name + ".onnx.data"
                    m = onnx.load(static)
                    onnx.save_model(m, tmp, save_as_external_data=True, all_tensors_to_one_file=True,
                                    location=data, size_threshold=1024)
                    source["exporter"] = (static_call + "; then onnx.save_model(model, f, save_as_external_data=True, "
                                          f"all_tensors_to_one_file=True, location={data!r}, size_threshold=1024)")
                    return self.finish(name, tmp, source, labels=CIFAR10, external=data, expect=expect,
                                       mini_of=full_name if mini else None)
                fmt = "QDQ" if full_name == "mobilenetv3-qdq" else "QOperator"
                self.quantize(static, tmp, fmt)
                source["package_quantizer"] = f"onnxruntime {PINS['onnxruntime']} ({LICENCES['onnxruntime']})"
                source["exporter"] = (static_call + "; then onnxruntime.quantization.quantize_static(f, out, reader, "
                                      f"quant_format=QuantFormat.{fmt}, per_channel=True, activation_type=QuantType.QInt8, "
                                      "weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax), "
                                      "no pre-processing")
                source["calibration"] = CALIBRATION
        except Exception as e:  # noqa: BLE001
            fail(step, f"{type(e).__name__}: {e}")
        return self.finish(name, tmp, source, shapes=shapes, labels=CIFAR10, expect=expect,
                           mini_of=full_name if mini else None)

    def quantize(self, src, dst, fmt):
        import numpy as np
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)

        images = calibration_images(np)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(images)

            def get_next(self):
                x = next(self.it, None)
                return None if x is None else {"input": x}

        quantize_static(src, dst, Reader(), quant_format=getattr(QuantFormat, fmt), per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)

    # -- all -------------------------------------------------------------------------------

    def run(self):
        for name in ULTRALYTICS:
            full = self.ultralytics(name, mini=False)
            if self.too_big(full):
                self.set_mini(full, self.ultralytics(name, mini=True))
        for name in MOBILENET:
            full = self.mobilenet(name, mini=False)
            if self.too_big(full):
                self.set_mini(full, self.mobilenet(name, mini=True))


CALIBRATION = ("16 synthetic 224x224 RGB images (calibration_images in tools/export_compat.py): a two-colour "
               "linear gradient at angle k*22.5 degrees with a disc, a square or stripes over it, plus "
               "numpy default_rng(k) normal noise (sigma 0.03), clipped to [0, 1], then normalised by the "
               "ImageNet mean and std, as torchvision's classifiers expect; NCHW float32, one image per batch")


def calibration_images(np, n=16, size=MOBILENET_SIZE):
    palette = np.array([[0.9, 0.1, 0.1], [0.1, 0.7, 0.2], [0.1, 0.2, 0.9], [0.95, 0.85, 0.1],
                        [0.6, 0.2, 0.7], [0.1, 0.8, 0.8], [0.5, 0.5, 0.5], [0.95, 0.95, 0.95]], np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    mean = np.array(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.array(IMAGENET_STD, np.float32)[:, None, None]
    out = []
    for k in range(n):
        a = k * np.pi / 8
        t = np.clip(0.5 + (np.cos(a) * (xx - 0.5) + np.sin(a) * (yy - 0.5)), 0, 1)
        c0, c1, c2 = palette[k % 8], palette[(k + 3) % 8], palette[(k + 5) % 8]
        img = c0[:, None, None] * (1 - t) + c1[:, None, None] * t
        cx, cy, r = 0.3 + 0.4 * ((k * 5) % 7) / 6, 0.3 + 0.4 * ((k * 3) % 5) / 4, 0.12 + 0.02 * (k % 4)
        if k % 3 == 0:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        elif k % 3 == 1:
            mask = (abs(xx - cx) < r) & (abs(yy - cy) < r)
        else:
            mask = (np.floor((xx + yy) * (6 + k)) % 2) == 0
        img = np.where(mask[None], c2[:, None, None], img)
        img = img + np.random.default_rng(k).normal(0, 0.03, img.shape).astype(np.float32)
        img = (np.clip(img, 0, 1) - mean) / std
        out.append(img[None].astype(np.float32))
    return out


def export(out):
    step = "export"
    # Before anything imports ultralytics: it reads these at import time.
    work = os.path.join(out, ".work")
    os.makedirs(work, exist_ok=True)
    os.environ.update({"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_CONFIG_DIR": os.path.join(work, "config"),
                       "MPLCONFIGDIR": os.path.join(work, "matplotlib"), "TORCH_HOME": os.path.join(work, "torch"),
                       "PIP_NO_INDEX": "1", "HF_HUB_OFFLINE": "1"})
    guard = NetworkGuard()
    import importlib.metadata as md

    wrong = {k: md.version(k) for k, v in PINS.items() if md.version(k) != v}
    if wrong:
        fail(step, f"installed {wrong}, this helper is written for {PINS}")
    import torch

    torch.set_num_threads(1)
    from ultralytics.utils import SETTINGS

    SETTINGS.update(sync=False)  # no analytics or crash reports (offline anyway)
    cwd = os.getcwd()
    os.chdir(work)  # Ultralytics writes an export of yolov8n.yaml to ./yolov8n.onnx
    try:
        Exporter(out).run()
    finally:
        os.chdir(cwd)
    if guard.attempts:
        fail(step, f"something tried to reach the network: {guard.attempts[:5]}")
    shutil.rmtree(work)


# ---------------------------------------------------------------------------------------------
# verify (export venv)

def verify(root):
    import numpy as np
    import onnx

    names = model_dirs(root)
    if not names:
        fail("verify", f"no models in {root}")
    for name in names:
        step = f"verify {name}"
        rec = load_record(root, name)
        d = os.path.join(root, name)
        for f, want in rec["files"].items():
            p = os.path.join(d, f)
            if not os.path.isfile(p) or os.path.getsize(p) != want["bytes"] or sha256_file(p) != want["sha256"]:
                fail(step, f"{p} is missing or not the file {name}.ort.json records")
        path = os.path.join(d, rec["file"])
        try:
            onnx.checker.check_model(path, full_check=True)
            sess = ort_session(path)
        except Exception as e:  # noqa: BLE001
            fail(step, f"{path} does not load: {type(e).__name__}: {e}")
        exact = True
        for run in rec["runs"]:
            x = test_input(np, run["input"]["shape"])
            if sha256_bytes(x.astype("<f4").tobytes()) != run["input"]["sha256"]:
                fail(step, f"the test input {run['input']['shape']} is not the recorded one")
            outs = sess.run(None, {run["input"]["name"]: x})
            for o, v in zip(sess.get_outputs(), outs):
                want = run["outputs"].get(o.name)
                got = summarise(np, v)
                if want is None or got["shape"] != want["shape"]:
                    fail(step, f"{path}: output {o.name} {got['shape']}, recorded {want and want['shape']}")
                if got["sha256"] == want["sha256"]:
                    continue
                exact = False
                key = f"first{FIRST_VALUES}"
                a = np.array(got[key] + [got.get("min", 0), got.get("max", 0), got.get("mean", 0)], np.float64)
                b = np.array(want[key] + [want.get("min", 0), want.get("max", 0), want.get("mean", 0)], np.float64)
                if not np.allclose(a, b, rtol=1e-3, atol=1e-4):
                    fail(step, f"{path}: output {o.name} differs from the recorded one beyond rtol 1e-3")
        shapes = "; ".join(" ".join(f"{k} {v['shape']}" for k, v in r["outputs"].items()) for r in rec["runs"])
        print(f"verified {name}: onnx.checker ok, onnxruntime {'bit-exact' if exact else 'close (not bit-exact)'}: {shapes}")


# ---------------------------------------------------------------------------------------------
# summary, commit (stdlib only)

def committable(rec):
    return all(f["bytes"] <= COMMIT_LIMIT for f in rec["files"].values())


def is_committed(fixtures, rec):
    d = os.path.join(fixtures, rec["name"])
    files = list(rec["files"]) + [rec["name"] + ".ort.json"]
    return all(os.path.isfile(os.path.join(d, f)) for f in files) and all(
        sha256_file(os.path.join(d, f)) == w["sha256"] for f, w in rec["files"].items())


def summary(models, fixtures):
    for name in model_dirs(models):
        rec = load_record(models, name)
        g = rec["graph"]
        opset = g["opset_import"].get("ai.onnx")
        extra = "".join(f"+{k}" for k in g["opset_import"] if k != "ai.onnx")
        shape = lambda s: "[" + ", ".join(map(str, s)) + "]"  # noqa: E731
        ins = ", ".join(f"{v['name']} {shape(v['shape'])}" for v in g["inputs"])
        outs = ", ".join(f"{v['name']} {shape(v['shape'])}" for v in g["outputs"])
        if not committable(rec):
            status = f"cache-only (> {COMMIT_LIMIT} B" + (f"; committed as {rec['mini']})" if rec["mini"] else ")")
        elif is_committed(fixtures, rec):
            status = "committed"
        else:
            status = "small, not in the fixtures yet (--commit-small)"
        print(f"{name}: {rec['bytes']} B, opset {opset}{extra}, in {ins}, out {outs}, {status}")


SOURCES_HEAD = """\
# Compatibility suite: third-party ONNX models

Written by `scripts/export-compat --commit-small`; do not edit by hand. ONNX files made by public
exporters from exactly pinned PyPI packages (`tools/requirements-export.txt`), for lookout's tests:
models lookout did not train, in the forms real users bring. **All weights are random**:
`torch.manual_seed({seed})` before each model is built, then every BatchNorm's statistics and affine
parameters, and every all-zero bias, drawn uniformly (fresh, they would fold into biases that are
all exactly zero). The outputs mean nothing; what counts is that a runtime computes the same
numbers as onnxruntime.

Only files of at most {limit} bytes are committed. A bigger model stays in the export cache
(`.cache/compat/models/`, made again by the script) and is represented here by its `-mini` twin:
the same architecture at a smaller width, with the same operators and node count (the script
checks both).

Each folder `<name>/` holds `<name>.onnx` (the external-data model also `<name>.onnx.data`),
`<name>.ort.json` and, for the MobileNetV3 models, `labels.txt` (the 10 CIFAR-10 class names).
`<name>.ort.json` records the file (bytes, sha256, producer, opsets, metadata_props, inputs,
outputs, operator counts), how it was made, and onnxruntime {ort}'s outputs on the test input
(CPU, ORT_DISABLE_ALL, one thread): per output its shape, the sha256 of its little-endian bytes,
the first {first} values, min, max and mean; and the median latency of {runs} runs on the exporting
machine (indicative only). The test input is recreated without numpy:

    {formula}
    Rust: {rust}

A symbolic batch is 1 and a symbolic height or width {size}; `-dynbatch` also records batch 2 and
`-dynhw` 160x256.

| model | package (exact version) | licence | architecture | exporter call | opset | weights | bytes | committed |
|---|---|---|---|---|---|---|---|---|
"""

SOURCES_TAIL = """
Notes:

- `yolov10n`: {v10}.
- `yolov8n-det-nms`: {nms}.
- `mobilenetv3-qop` uses operators of the `com.microsoft` domain (onnxruntime's contrib operators:
  QGemm, QLinearAdd, QLinearMul, QLinearGlobalAveragePool); `mobilenetv3-qdq` only ai.onnx ones.
- Ultralytics' `model.names` are set from the wheel's `cfg/datasets/` files (COCO, COCO-pose,
  ImageNet), as a trained checkpoint would carry them; the classifier mini has 10 classes
  (CIFAR-10 names), its full 1280x1000 Linear layer alone being 5.1 MB.
- Calibration of the quantized models: {calibration}.

Licences. **Ultralytics** (`ultralytics` {ultra}) is AGPL-3.0: what is committed here is only the
ONNX export of a randomly initialised architecture (the layer graph its YAML files describe, at a
reduced width), with the metadata_props Ultralytics writes (its description, author, licence and
docs strings among them; `date` is fixed to `{date}` so that exports are
byte-reproducible) and class names from its dataset files; no Ultralytics code and no trained
weights. **torchvision** {tv} is BSD-3-Clause (the MobileNetV3-Small architecture, `weights=None`).
The graphs are written by **torch** {torch} (BSD-3-Clause), `torch.onnx.export` with the
TorchScript exporter (`dynamo=False`), for Ultralytics then simplified by **onnxslim** {slim} (MIT);
the quantized models are made by **onnxruntime** {ort}'s quantizer (MIT).

`SHA256SUMS` lists every file in this folder but itself (`sha256sum --check SHA256SUMS`).
"""


def commit(models, fixtures):
    step = "commit"
    names = model_dirs(models)
    if not names:
        fail(step, f"no models in {models}")
    recs = {n: load_record(models, n) for n in names}
    small = [n for n in names if committable(recs[n])]
    os.makedirs(fixtures, exist_ok=True)
    for old in model_dirs(fixtures):
        if old not in small:
            shutil.rmtree(os.path.join(fixtures, old))
    for n in small:
        src, dst = os.path.join(models, n), os.path.join(fixtures, n)
        tmp = dst + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for f in list(recs[n]["files"]) + [n + ".ort.json"]:
            shutil.copyfile(os.path.join(src, f), os.path.join(tmp, f))
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)
    any_rec = recs[names[0]]
    lines = [SOURCES_HEAD.format(seed=SEED, limit=COMMIT_LIMIT, ort=any_rec["onnxruntime"]["version"],
                                 first=FIRST_VALUES, runs=LATENCY_RUNS, formula=INPUT_FORMULA, rust=INPUT_RUST,
                                 size=MOBILENET_SIZE)]
    notes = {}
    for n in names:
        r = recs[n]
        s = r["source"]
        notes.setdefault(n.removesuffix("-mini"), s.get("note"))
        pkg = f"{s['package']} {s['version']}"
        lic = s["licence"]
        if "package_quantizer" in s:
            pkg += f"; quantized by {s['package_quantizer'].split(' (')[0]}"
            lic += "; MIT"
        opsets = ", ".join(f"{k} {v}" for k, v in r["graph"]["opset_import"].items())
        where = "yes" if n in small else f"no (cache only), see `{r['mini']}`" if r["mini"] else "no (cache only)"
        cell = lambda t: t.replace("|", "\\|")  # noqa: E731
        weights = f"random, seed {SEED}"
        lines.append(f"| `{n}` | {cell(pkg)} | {cell(lic)} | {cell(s['architecture'])} | `{cell(s['exporter'])}` "
                     f"| {opsets} | {weights} | {r['bytes']} | {where} |\n")
    lines.append(SOURCES_TAIL.format(ultra=PINS["ultralytics"], date=FIXED_DATE, tv=PINS["torchvision"],
                                     ort=PINS["onnxruntime"], torch=PINS["torch"], slim=PINS["onnxslim"],
                                     calibration=CALIBRATION, v10=notes.get("yolov10n"),
                                     nms=notes.get("yolov8n-det-nms")))
    write_atomic(os.path.join(fixtures, "SOURCES.md"), "".join(lines).encode())
    sums = []
    for root, dirs, files in os.walk(fixtures):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            rel = os.path.relpath(p, fixtures)
            if rel == "SHA256SUMS":
                continue
            if os.path.getsize(p) > COMMIT_LIMIT:
                fail(step, f"{p} is {os.path.getsize(p)} bytes, over the {COMMIT_LIMIT} allowed in the repository")
            sums.append(f"{sha256_file(p)}  {rel}\n")
    write_atomic(os.path.join(fixtures, "SHA256SUMS"), "".join(sums).encode())
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(fixtures) for f in fs)
    print(f"committed {len(small)} models to {fixtures}: {len(sums) + 1} files, {total} B")


def main():
    cmds = {"versions": (versions, 1), "export": (export, 1), "verify": (verify, 1),
            "summary": (summary, 2), "commit": (commit, 2)}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds or len(sys.argv) - 2 != cmds[sys.argv[1]][1]:
        sys.exit(__doc__)
    fn, _ = cmds[sys.argv[1]]
    fn(*sys.argv[2:])


if __name__ == "__main__":
    main()
