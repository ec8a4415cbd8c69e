"""On a GPU: the compiled and the compiled + CUDA-graph training steps give the eager step's
losses and weights, step by step and through the training loop, a CUDA-graph step that fails
falls back to the compiled one, and compile="auto" takes only verified kinds.

Runs only where CUDA is present. scripts/gpu_session.sh runs it first on a lent GPU and keeps
its output (junit.xml, log) in results/gpu-step-check/; helpers/options/compiled_step.py's
VERIFIED_ON_GPU lists the kinds that passed there, which tests/test_step.py checks against that
file.
"""
import os

import pytest
import torch

from conftest import ROOT
from helpers.options.compiled_step import CAPTURED, COMPILED, CapturedStep, CompiledStep, \
    choose_step_kind, prepare_step
from helpers.files import read_weights
from helpers.settings import make_config, recipe_of
from helpers.step import EAGER, TrainingStep
from helpers.training import make_optimizer, train_one_epoch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

KINDS = {"compiled": CompiledStep, "graph": CapturedStep}
# (losses, weights), relative: the losses to each other, the weights' difference to how far the
# steps moved them. bf16 keeps 8 bits of mantissa, and fused kernels round in another order than
# eager ones; on the CPU, in fp32, these weights came out 0.2 % apart after 3 steps.
TOLERANCE = {"fp32": (2e-3, 0.02), "bf16": (3e-2, 0.2)}
STEPS, BATCH, LAST_BATCH = 6, 64, 40
# Trained weights: a freshly initialised deep network has near-dead BatchNorm channels whose
# tiny variances magnify rounding, so two correct steps already disagree there.
TRAINED = os.path.join(ROOT, "results", "reference-seed0", "model.pt")


@pytest.fixture(autouse=True)
def fresh_compiler():
    """Each test compiles from scratch: torch.compile gives up on a function after a few
    recompilations and then runs it eagerly, without failing, and these tests build many steps
    of one function."""
    torch.compiler.reset()


def setup(precision):
    """The trained reference network on the GPU, channels_last, fused SGD, as training
    (helpers/training.py's start_training) builds them."""
    network = read_weights(TRAINED)[0].train().cuda().to(memory_format=torch.channels_last)
    optimizer = make_optimizer(network, recipe_of(make_config()), fused=True)
    amp_dtype = torch.bfloat16 if precision == "bf16" else None

    def make(cls):
        return cls(network, optimizer, torch.nn.CrossEntropyLoss(), amp_dtype=amp_dtype,
                   channels_last=True)

    return network, optimizer, make


def batches(last_batch=BATCH):
    generator = torch.Generator().manual_seed(1)
    sizes = [BATCH] * (STEPS - 1) + [last_batch]
    return [(torch.randn(size, 3, 32, 32, generator=generator).cuda(),
             torch.randint(0, 10, (size,), generator=generator).cuda()) for size in sizes]


def set_rate(optimizer, index):
    """A learning rate changed before each step, as a per-step schedule does: no step may keep
    the rate it was compiled or recorded with."""
    for group in optimizer.param_groups:
        group["lr"] = 0.02 * 0.8 ** index


def train(step, optimizer):
    """STEPS steps, each with its own learning rate; the losses, as floats."""
    losses = []
    for index, (images, labels) in enumerate(batches()):
        set_rate(optimizer, index)
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


def copy_of(network) -> dict:
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("kind", ["compiled", "graph"])
def test_step_matches_eager(kind, precision):
    network, optimizer, make = setup(precision)
    start = copy_of(network)
    eager_losses = train(make(TrainingStep), optimizer)
    eager_state = copy_of(network)

    network, optimizer, make = setup(precision)
    step, _, notes = prepare_step(KINDS[kind].kind, make, batches()[0], sizes=[BATCH])
    assert step.kind == KINDS[kind].kind, f"fell back: {notes}"  # a fallback would prove nothing
    losses = train(step, optimizer)
    distance = relative_distance(eager_state, network.state_dict(), start)
    worst = max(abs(a - b) / abs(b) for a, b in zip(losses, eager_losses))
    print(f"{kind} {precision}: losses {losses} (eager {eager_losses}), largest relative loss "
          f"difference {worst:.2e}, weights {distance:.2e} of their movement apart")
    loss_tolerance, weight_tolerance = TOLERANCE[precision]
    assert worst < loss_tolerance and distance < weight_tolerance


def epoch_with(cls):
    """One epoch of train_one_epoch, as training runs it, with a step of class `cls` and a
    per-step schedule: (its result, the weights after it)."""
    network, optimizer, make = setup("bf16")
    step, _, notes = prepare_step(cls.kind, make, batches()[0], sizes=[BATCH, LAST_BATCH])
    assert step.kind == cls.kind, f"fell back: {notes}"
    set_rate(optimizer, 0)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.8)
    result = train_one_epoch(step, batches(LAST_BATCH), epoch=1, after_step=schedule.step,
                             check_every=STEPS)
    return result, copy_of(network)


@pytest.mark.parametrize("kind", ["graph"])
def test_step_matches_eager_in_the_training_loop(kind):
    """The loop reads a step's loss and logits after the schedule's step, and a CUDA-graph step's
    next replay overwrites them (reading them later would raise); its last batch, smaller, has
    graphs of its own."""
    start = copy_of(setup("bf16")[0])
    eager, eager_state = epoch_with(TrainingStep)
    result, state = epoch_with(KINDS[kind])
    distance = relative_distance(eager_state, state, start)
    print(f"{kind} through the loop: {result} (eager {eager}), weights {distance:.2e} of their "
          f"movement apart")
    loss_tolerance, weight_tolerance = TOLERANCE["bf16"]
    assert result["images"] == eager["images"] == BATCH * (STEPS - 1) + LAST_BATCH
    assert abs(result["loss"] / eager["loss"] - 1) < loss_tolerance
    assert distance < weight_tolerance


def test_a_cuda_graph_step_that_fails_falls_back_to_the_compiled_step(monkeypatch):
    compile_ = torch.compile

    def compile_without_graphs(function, **options):
        if options.get("mode") != "reduce-overhead":
            return compile_(function, **options)

        def refused(*args, **kwargs):
            raise RuntimeError("CUDA graphs refused")
        return refused

    monkeypatch.setattr(torch, "compile", compile_without_graphs)
    network, optimizer, make = setup("bf16")
    before = copy_of(network)
    with pytest.warns(UserWarning, match="compiled \\+ CUDA graph training step failed"):
        step, _, notes = prepare_step(CAPTURED, make, batches()[0], sizes=[BATCH])
    assert step.kind == COMPILED and "CUDA graphs refused" in notes[0]
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


@pytest.mark.parametrize("verified, expected", [((), EAGER), ((COMPILED,), COMPILED),
                                                ((CAPTURED, COMPILED), CAPTURED)])
def test_auto_takes_only_verified_kinds_on_this_gpu(monkeypatch, verified, expected):
    monkeypatch.setattr("helpers.options.compiled_step.VERIFIED_ON_GPU", verified)
    if torch.cuda.get_device_capability()[0] < 8:
        expected = EAGER  # auto keeps older GPUs (a T4) on the eager step
    assert choose_step_kind("auto", torch.device("cuda"))[0] == expected
