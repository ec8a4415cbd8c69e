"""The evidence behind helpers/options/quantization.py's choice of route: the reference network's CPU
images/s as float (eager and compiled) and as int8 by each route, measured in turns in one run.

    python3 benchmarks/int8_routes.py --weights results/reference-seed0/model.pt

Routes: torch.ao.quantization FX graph mode (what the project uses; eager int8 kernels), and
torchao's PT2E flow (torch.export, prepare_pt2e with X86InductorQuantizer, convert_pt2e), both
as converted and after torch.compile, which lowers it to int8 kernels (needs a C++ compiler).
PT2E needs the torchao package, which the project does not depend on: without it those rows are
skipped. Calibration: random normal inputs (this measures speed only, not accuracy). Also
prints the seconds each conversion and compilation took.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from benchmarks.common import environment, finish  # noqa: E402
from helpers.options.quantization import quantize  # noqa: E402
from helpers.options.sizes import cpu_images_per_second  # noqa: E402
from helpers.files import read_weights  # noqa: E402


def pt2e_networks(network: torch.nn.Module, example: torch.Tensor) -> dict:
    """PT2E int8 as converted and compiled, with the seconds each step took; {} without torchao."""
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as error:
        print(f"PT2E skipped: {error}")
        return {}
    started = time.perf_counter()
    exported = torch.export.export(network, (example,)).module()
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        prepared(example)
    converted = convert_pt2e(prepared)
    print(f"PT2E export + prepare + calibrate + convert: {time.perf_counter() - started:.1f} s")
    import torch._inductor.config as inductor

    inductor.freezing = True  # constant weights folded: what lets inductor use int8 kernels
    compiled = torch.compile(converted)
    started = time.perf_counter()
    with torch.no_grad():
        compiled(example)
    print(f"PT2E torch.compile (first call): {time.perf_counter() - started:.1f} s")
    return {"int8 PT2E, not compiled": converted, "int8 PT2E, compiled": compiled}


class Graph(torch.nn.Module):
    """A compiled or exported callable as a module that predict_logits can run."""

    def __init__(self, function):
        super().__init__()
        # Not a submodule: .eval() must not reach an exported graph, which refuses train/eval.
        object.__setattr__(self, "function", function)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.function(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="results/reference-seed0/model.pt")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    network = read_weights(args.weights)[0].float()
    example = torch.randn(args.batch_size, 3, 32, 32)
    started = time.perf_counter()
    int8 = quantize(network, torch.randint(0, 256, (args.batch_size, 3, 32, 32), dtype=torch.uint8))
    print(f"FX prepare + calibrate + convert: {time.perf_counter() - started:.1f} s")
    compiled = torch.compile(network)
    started = time.perf_counter()
    with torch.no_grad():
        compiled(example)
    print(f"float torch.compile (first call): {time.perf_counter() - started:.1f} s")
    networks = {"float": network, "float, compiled": Graph(compiled), "int8 FX (project)": int8,
                **{name: Graph(g) for name, g in pt2e_networks(network, example).items()}}
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8)
    speed = cpu_images_per_second(networks, images, args.batch_size)
    for name, measured in speed.items():
        rounds = ", ".join(f"{value:.0f}" for value in measured["rounds_images_per_second"])
        print(f"{name:<26} {measured['images_per_second']:7.0f} images/s (rounds: {rounds})")
    finish({"environment": environment(torch.device("cpu")), "weights": args.weights,
            "images_per_second": {name: m["images_per_second"] for name, m in speed.items()}}, args.json)


if __name__ == "__main__":
    main()
