"""On a GPU: the compiled and the compiled + CUDA-graph training steps give the eager step's
losses and weights, a failed capture falls back, and compile="auto" takes only verified kinds.

Runs only where CUDA is present. scripts/gpu_session.sh runs it first on a lent GPU and keeps
its output (junit.xml, log) in results/gpu-step-check/; helpers/fast_step.py's VERIFIED_ON_GPU lists
the kinds that passed there, which tests/test_step.py checks against that file.
"""
import os

import pytest
import torch

from conftest import ROOT
from helpers.fast_step import CAPTURED, COMPILED, CapturedStep, CompiledStep, choose_step_kind, \
    prepare_step
from helpers.files import read_weights
from helpers.settings import make_config, recipe_of
from helpers.step import EAGER, TrainingStep
from helpers.training import make_optimizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

KINDS = {"compiled": CompiledStep, "graph": CapturedStep}
# (losses, weights), relative: the losses to each other, the weights' difference to how far the
# steps moved them. bf16 keeps 8 bits of mantissa, and fused kernels round in another order than
# eager ones; on the CPU, in fp32, these weights came out 0.2 % apart after 3 steps.
TOLERANCE = {"fp32": (2e-3, 0.02), "bf16": (3e-2, 0.2)}
STEPS, BATCH = 6, 64
# Trained weights: a freshly initialised deep network has near-dead BatchNorm channels whose
# tiny variances magnify rounding, so two correct steps already disagree there.
TRAINED = os.path.join(ROOT, "results", "reference-seed0", "model.pt")


def setup(step_class, precision):
    """The trained reference network on the GPU, channels_last, fused SGD, as training
    (helpers/training.py's start_training) builds them."""
    network = read_weights(TRAINED)[0].train().cuda().to(memory_format=torch.channels_last)
    optimizer = make_optimizer(network, recipe_of(make_config()), fused=True)
    amp_dtype = torch.bfloat16 if precision == "bf16" else None

    def make(cls):
        return cls(network, optimizer, torch.nn.CrossEntropyLoss(), amp_dtype=amp_dtype,
                   channels_last=True)

    return network, optimizer, make


def batches():
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 3, 32, 32, generator=generator).cuda(),
             torch.randint(0, 10, (BATCH,), generator=generator).cuda()) for _ in range(STEPS)]


def train(step, optimizer):
    """STEPS steps with a learning rate changed before each, as a per-step schedule does (the
    captured graph must read the new rate); the losses, as floats."""
    losses = []
    for index, (images, labels) in enumerate(batches()):
        for group in optimizer.param_groups:
            group["lr"] = 0.02 * 0.8 ** index
        losses.append(step(images, labels)[0].float().item())
    torch.cuda.synchronize()
    return losses


def relative_distance(first: dict, second: dict, start: dict) -> float:
    """|first - second| over |first - start| across all floating tensors: the difference of two
    runs as a share of how far training moved the weights."""
    keys = [k for k, v in first.items() if v.is_floating_point()]
    apart = sum(float((first[k].float() - second[k].float()).norm() ** 2) for k in keys) ** 0.5
    moved = sum(float((first[k].float() - start[k].float()).norm() ** 2) for k in keys) ** 0.5
    return apart / max(moved, 1e-12)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("kind", ["compiled", "graph"])
def test_step_matches_eager(kind, precision):
    network, optimizer, make = setup(TrainingStep, precision)
    start = {k: v.detach().clone() for k, v in network.state_dict().items()}
    eager_losses = train(make(TrainingStep), optimizer)
    eager_state = {k: v.detach().clone() for k, v in network.state_dict().items()}

    network, optimizer, make = setup(KINDS[kind], precision)
    step, _, notes = prepare_step(KINDS[kind].kind, make, batches()[0], sizes=[BATCH])
    assert step.kind == KINDS[kind].kind, f"fell back: {notes}"  # a fallback would prove nothing
    losses = train(step, optimizer)
    distance = relative_distance(eager_state, network.state_dict(), start)
    worst = max(abs(a - b) / abs(b) for a, b in zip(losses, eager_losses))
    print(f"{kind} {precision}: losses {losses} (eager {eager_losses}), largest relative loss "
          f"difference {worst:.2e}, weights {distance:.2e} of their movement apart")
    loss_tolerance, weight_tolerance = TOLERANCE[precision]
    assert worst < loss_tolerance and distance < weight_tolerance


def test_a_capture_that_fails_falls_back_to_the_compiled_step(monkeypatch):
    def broken(self, images, targets):
        raise RuntimeError("capture refused")

    monkeypatch.setattr(CapturedStep, "capture", broken)
    network, optimizer, make = setup(CapturedStep, "bf16")
    before = {k: v.detach().clone() for k, v in network.state_dict().items()}
    with pytest.warns(UserWarning, match="compiled \\+ CUDA graph training step failed"):
        step, _, notes = prepare_step(CAPTURED, make, batches()[0], sizes=[BATCH])
    assert step.kind == COMPILED and "capture refused" in notes[0]
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


@pytest.mark.parametrize("verified, expected", [((), EAGER), ((COMPILED,), COMPILED),
                                                ((CAPTURED, COMPILED), CAPTURED)])
def test_auto_takes_only_verified_kinds_on_this_gpu(monkeypatch, verified, expected):
    monkeypatch.setattr("helpers.fast_step.VERIFIED_ON_GPU", verified)
    if torch.cuda.get_device_capability()[0] < 8:
        expected = EAGER  # auto keeps older GPUs (a T4) on the eager step
    assert choose_step_kind("auto", torch.device("cuda"))[0] == expected
