"""``mskmorph export onnx``: every shipped network as ONNX, beside its weights (development only).

    bash .ci/setup-export                                   # once: .venv-export (torch, onnx, onnxscript)
    .venv-export/bin/python -m MSKCommonLib.cli export onnx # all four networks
    .venv-export/bin/python -m MSKCommonLib.cli export onnx --weights path/to/cobb_seg4reg.pt

The export needs ``onnx`` and ``onnxscript`` (torch 2.13's exporter); ``onnx`` wants
protobuf >= 6.31, which mediapipe (protobuf < 5) in the runtime environment cannot live with,
so it runs in an environment of its own. Each .onnx keeps, in its metadata (key ``mskmorph``),
the network's config, its output names, the name and sha256 of the .pt it came from and the
exporter's versions; ``--check`` (default on) runs the file in ONNX Runtime against torch on a
random input and reports the largest relative difference.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OPSET = 18


def networks():
    """name -> (.pt path, loader -> (TorchNetwork, example input shape), dynamic batch). The back
    network is exported for one photo at a time (its patch reshapes fix the batch)."""
    from CobbAngleLib import predict as cobb
    from CobbAngleLib import vertebra_level as level
    from CobbAngleLib import vertebra_read as vertebra
    from KneeLandmarksLib import predict as knee
    from SpineMorphologyLib import predict as back

    from MSKCommonLib.runtime import torch_network

    def cobb_net(pt):
        net = torch_network(pt, cobb.WEIGHTS_FORMAT, cobb.build_network, cobb.OUTPUTS, "cpu", 1, "Cobb")
        return net, (1, 1, int(net.config.get("input_height", 512)), int(net.config.get("input_width", 256)))

    def vertebra_net(pt):
        net = torch_network(pt, vertebra.WEIGHTS_FORMAT, vertebra.build_network, vertebra.OUTPUTS, "cpu", 1,
                            "Cobb vertebra")
        return net, (17, 1, int(net.config.get("patch_height", 128)), int(net.config.get("patch_width", 96)))

    def level_net(pt):
        net = torch_network(pt, level.WEIGHTS_FORMAT, level.build_network, level.OUTPUTS, "cpu", 1, "Cobb level")
        return net, (29, 1, int(net.config.get("patch_height", 96)), int(net.config.get("patch_width", 96)))

    def knee_net(stage):
        def load(pt):
            net = knee._load(pt, stage, "cpu", "torch", 1)
            s = int(net.config["input_size"])
            return net, (1, 1, s, s)
        return load

    def back_net(pt):
        from SpineMorphologyLib.frame import INPUT_HEIGHT, INPUT_WIDTH

        return back._torch_network(pt, "cpu", 1), (1, 3, INPUT_HEIGHT, INPUT_WIDTH)

    return {
        "cobb": (cobb.DEFAULT_WEIGHTS, cobb_net, True),  # batch 2 with test-time flip
        "cobb_vertebra": (vertebra.DEFAULT_WEIGHTS, vertebra_net, True),  # 17 patches a film, 34 with the flip
        "cobb_level": (level.DEFAULT_WEIGHTS, level_net, True),  # 29 chain positions a film, 58 with the flip
        "knee_detector": (knee.MODELS_DIR / knee.DETECTOR_FILE, knee_net("detector"), True),
        "knee_landmarks": (knee.MODELS_DIR / knee.LANDMARKS_FILE, knee_net("landmarks"), True),  # both knees at once
        "back": (back.DEFAULT_WEIGHTS, back_net, False),
    }


class _Outputs:
    """A torch module giving the named outputs as a tuple (what the exporter wants)."""

    def __new__(cls, model, names):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, image):
                out = self.model(image)
                return tuple(out[n] for n in names)

        return Wrapped().eval()


def export(name: str, pt: Path, load, dynamic: bool, out: Path | None = None, check: bool = True) -> dict:
    import onnx
    import torch

    from MSKCommonLib.runtime import METADATA_KEY, sha256

    net, shape = load(Path(pt))
    out = Path(out) if out else Path(pt).with_suffix(".onnx")
    wrapped = _Outputs(net.model, net.output_names)
    example = torch.rand(*shape)
    batch = torch.export.Dim("batch", min=1, max=max(8, 4 * shape[0]))
    program = torch.onnx.export(
        wrapped, (example,), None, input_names=["image"], output_names=list(net.output_names),
        dynamic_shapes={"image": {0: batch}} if dynamic else None, opset_version=OPSET, dynamo=True, external_data=False,
    )
    program.optimize()
    model = program.model_proto
    meta = {"network": name, "config": net.config, "outputs": list(net.output_names), "input_shape": list(shape),
            "dynamic_batch": bool(dynamic), "source": Path(pt).name, "source_sha256": sha256(pt),
            "exporter": f"torch {torch.__version__}, onnx {onnx.__version__}, opset {OPSET}"}
    model.metadata_props.append(onnx.StringStringEntryProto(key=METADATA_KEY, value=json.dumps(meta, sort_keys=True)))
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    record = {"network": name, "onnx": str(out), "onnx_sha256": sha256(out), "source": str(pt),
              "source_sha256": meta["source_sha256"], "bytes": out.stat().st_size}
    if check:
        record["max_relative_difference"] = compare(net, out, shape, (1, 2, 2 * shape[0]) if dynamic else (1,))
    return record


def compare(net, path: Path, shape, batches=(1, 2)) -> float:
    """Largest |onnx - torch| / max|torch| over the outputs, on random inputs of each batch size."""
    from MSKCommonLib.runtime import OnnxNetwork

    session = OnnxNetwork(path, device="cpu", threads=1)
    rng = np.random.default_rng(0)
    worst = 0.0
    for b in batches:
        x = rng.random((b, *shape[1:]), dtype=np.float32)
        a, o = net(x), session(x)
        for k in net.output_names:
            worst = max(worst, float(np.abs(a[k] - o[k]).max() / max(1e-12, np.abs(a[k]).max())))
    return worst


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--network", choices=("all", "cobb", "cobb_vertebra", "cobb_level", "knee_detector", "knee_landmarks", "back"), default="all")
    parser.add_argument("--weights", type=Path, help="a .pt to export instead of the shipped one (with --network)")
    parser.add_argument("--out", type=Path, help="the .onnx to write (default: beside the .pt)")
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs torch comparison")


def run(args) -> int:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"mskmorph export onnx: needs torch, onnx and onnxscript ({e}); "
                         "create the export environment with 'bash .ci/setup-export'") from None
    table = networks()
    chosen = list(table) if args.network == "all" else [args.network]
    if (args.weights or args.out) and len(chosen) != 1:
        raise SystemExit("mskmorph export onnx: --weights/--out need one --network")
    for name in chosen:
        pt, load, dynamic = table[name]
        record = export(name, args.weights or pt, load, dynamic, args.out, check=not args.no_check)
        print(json.dumps(record))
    return 0
