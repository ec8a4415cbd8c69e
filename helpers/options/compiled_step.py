"""The training step through torch.compile, for compile=True (or 'auto' where verified): three
kinds of step that compute the same thing.

* eager (helpers/step.py): PyTorch runs each operator as Python reaches it. The CPU launches
  several hundred small kernels per step, and on a large GPU it cannot launch them as fast as the
  GPU runs them (the profile in results/gpu-2026-11-26/ found the GPU idle 35-50 % of a step).
* compiled: `torch.compile` in its "default" mode fuses the network and loss into fewer, larger
  kernels (BatchNorm with the ReLU after it, the loss with the classifier), forward and backward.
* compiled + CUDA graph: the same, in torch.compile's "reduce-overhead" mode, which its
  documentation describes as "a mode that reduces the overhead of python with CUDA graphs,
  useful for small batches", at "the cost of more memory usage". Its CUDA graph trees
  (https://pytorch.org/docs/stable/torch.compiler_cudagraph_trees.html) record the compiled
  forward and backward passes once for each batch shape and replay each with one launch, so the
  CPU no longer holds the GPU back. The SGD update stays outside the graphs (fused kernels),
  so it reads the learning rate that the schedule sets, a plain float, at every step.

`prepare_step` builds the kind asked for, warms it up (compiling, and recording the graphs)
before epoch 1 so that its cost is reported apart from the epochs' times, and falls back, with a
warning, to the next simpler kind if that fails. Warm-up trains on a real batch and then puts
weights, BatchNorm statistics and momentum back as they were.
"""
from __future__ import annotations

import copy
import time
import warnings
from typing import Callable, List, Sequence, Tuple

import torch
from torch._dynamo.utils import counters

from ..step import EAGER, TrainingStep

COMPILED, CAPTURED = "compiled", "compiled + CUDA graph"
# The kinds that tests/test_step_gpu.py has shown, on a GPU, to give the eager step's losses and
# weights (its output is to be committed under results/gpu-step-check/; a CPU test keeps this list
# to what passed there: scripts/step_check.py reads it). compile="auto" takes the fastest of
# them and never another; until the check has passed on a GPU, it takes the eager step.
VERIFIED_ON_GPU: Tuple[str, ...] = ()


class CompiledStep(TrainingStep):
    """The same step with the network's forward pass and the loss compiled by torch.compile."""

    kind, mode = COMPILED, "default"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Shapes never change within a run except for an epoch's last batch: compiling for fixed
        # shapes gives the fastest kernels, at the cost of one more compile for that batch.
        self.forward_and_loss = torch.compile(self.forward_and_loss, mode=self.mode,
                                              dynamic=False)


class CapturedStep(CompiledStep):
    """The compiled step with its forward and backward passes replayed as CUDA graphs.

    A replay writes its outputs where the previous step's were: the loss and logits a step
    returns hold until the next step (helpers/training.py's train_one_epoch has used them by
    then), and reading them later raises an error rather than giving the new values."""

    kind, mode = CAPTURED, "reduce-overhead"

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        # Each step is one iteration of the CUDA graph trees, said outright rather than left to
        # their guess (a new iteration at each call with no backward pass pending).
        torch.compiler.cudagraph_mark_step_begin()
        return super().__call__(images, targets)


def choose_step_kind(compile_setting, device: torch.device, *, scaler=None,
                     distributed: bool = False, distillation: bool = False) -> Tuple[str, str]:
    """(kind, why) for the `compile` parameter on this machine."""
    if compile_setting is False:
        return EAGER, "compile=False"
    if compile_setting == "auto":
        if device.type != "cuda":
            return EAGER, "compile='auto' on the CPU, where compiling costs more than it saves"
        if torch.cuda.get_device_capability(device)[0] < 8:
            return EAGER, ("compile='auto' on a GPU older than compute capability 8.0 "
                           "(such as Colab's T4)")
    if device.type != "cuda":
        return COMPILED, "compile=True on the CPU (no CUDA graphs there)"
    blockers = [why for why, present in (("fp16 gradient scaling", scaler is not None),
                                         ("several ranks", distributed),
                                         ("a teacher network", distillation)) if present]
    kinds = [COMPILED] if blockers else [CAPTURED, COMPILED]
    if compile_setting == "auto":
        kinds = [kind for kind in kinds if kind in VERIFIED_ON_GPU]
        if not kinds:
            return EAGER, ("compile='auto' takes only step kinds verified on a GPU by "
                           "tests/test_step_gpu.py, and none of those allowed here is yet; "
                           "compile=True tries the compiled step")
    why = f"compile={compile_setting!r} on {torch.cuda.get_device_name(device)}"
    return kinds[0], why + (f"; no CUDA graph with {', '.join(blockers)}" if blockers else "")


def warm_up(step: TrainingStep, batch: Tuple[torch.Tensor, torch.Tensor],
            sizes: Sequence[int], steps: int = 3) -> None:
    """Run `steps` steps on the first `size` images of `batch` for every batch size, then put
    the weights, BatchNorm statistics and momentum back. Three steps compile each size and, for
    a CapturedStep, record its graphs: CUDA graph trees run a function once, record it on the
    next call and replay it from the third."""
    weights = {name: tensor.clone() for name, tensor in step.model.state_dict().items()}
    optimizer_state = copy.deepcopy(step.optimizer.state_dict())
    # Where "reduce-overhead" cannot record a graph (on the CPU, for one), torch.compile runs
    # it without CUDA graphs and no error: it only counts it here.
    skipped = counters["inductor"]["cudagraph_skips"]
    images, targets = batch
    step.model.train()  # compiled for the mode that training runs in
    try:
        for size in sizes:
            for _ in range(steps):
                step(images[:size], targets[:size])
        if step.kind == CAPTURED and counters["inductor"]["cudagraph_skips"] > skipped:
            raise RuntimeError("torch.compile ran the step without CUDA graphs "
                               "(TORCH_LOGS=perf_hints says why)")
    finally:
        # In place: the compiled and recorded graphs read these very tensors.
        step.model.load_state_dict(weights)
        # The momentum as it was (a fresh optimizer's: none), not the warm-up's.
        step.optimizer.load_state_dict(optimizer_state)


def prepare_step(kind: str, make: Callable[[type], TrainingStep],
                 batch: Tuple[torch.Tensor, torch.Tensor],
                 sizes: Sequence[int]) -> Tuple[TrainingStep, float, List[str]]:
    """(step, warm-up seconds, fallback notes): the step of `kind`, warmed up, or the next
    simpler kind that works here. `make(cls)` builds a step of class `cls`."""
    notes = []
    order = [CAPTURED, COMPILED, EAGER]
    for candidate in order[order.index(kind):]:
        step = make({CAPTURED: CapturedStep, COMPILED: CompiledStep,
                     EAGER: TrainingStep}[candidate])
        if candidate == EAGER:
            return step, 0.0, notes
        started = time.perf_counter()
        try:
            warm_up(step, batch, sizes)
            return step, time.perf_counter() - started, notes
        except Exception as error:  # compiler and CUDA graph errors come in many types
            note = (f"the {candidate} training step failed ({type(error).__name__}: "
                    f"{str(error).splitlines()[0] if str(error) else ''}); falling back")
            warnings.warn(note)
            notes.append(note)
    raise AssertionError("unreachable: the eager step needs no warm-up")
