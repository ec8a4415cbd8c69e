"""Training: optimizer and schedule from a Recipe, the exponential moving average of weights,
`train_one_epoch`, and `fit`, the epoch loop, with what a checkpoint holds to resume exactly.

`fit` takes plain values (the images, the recipe, the training state, the device), builds each
epoch's batches and validates itself, and yields each finished epoch: the caller saves
checkpoints and prints (helpers/stages.py). Everything that decides a run's numbers is here;
where files go and what messages say is not.
"""
from __future__ import annotations

import ast
import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .augment import (dataloader_batches, epoch_generator, epoch_seed, fast_batches,
                      to_device_tensors)
from .distributed import DistributedContext, sum_over_ranks, wrap_for_training
from .evaluation import evaluate
from .recipes import Augmentation, Recipe
from .step import EAGER, Distillation, TrainingStep


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite in `epoch` by `step`: training stops."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"the training loss became NaN or infinite in epoch {epoch} by step {step}")
        self.epoch, self.step = epoch, step


# --- optimizer, schedule, precision, weight average -----------------------------------------

def make_optimizer(network: nn.Module, recipe: Recipe, fused: bool = False) -> torch.optim.SGD:
    """SGD with momentum; optionally without weight decay on BatchNorm weights and biases.
    `fused` (GPUs) updates all parameters in one kernel instead of a few per tensor list."""
    if recipe.decay_norm_and_bias:
        groups = [{"params": list(network.parameters()), "weight_decay": recipe.weight_decay}]
    else:
        decayed = [p for p in network.parameters() if p.ndim > 1]   # conv and linear weights
        exempt = [p for p in network.parameters() if p.ndim <= 1]   # BN weights, all biases
        groups = [{"params": decayed, "weight_decay": recipe.weight_decay},
                  {"params": exempt, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                           fused=fused or None)


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, epochs: int,
                   steps_per_epoch: int) -> Tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """(scheduler, steps_each_batch): MultiStepLR per epoch, or per batch a linear warmup and
    then a cosine or linear decay to zero."""
    if recipe.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(recipe.milestones), recipe.gamma), False
    warmup = max(1, round(recipe.warmup_epochs * steps_per_epoch))
    total = max(warmup + 1, epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / (total - warmup)
        if recipe.schedule == "warmup_linear":
            return 1 - progress
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), True


def cpu_computes_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 natively: the x86 flags AVX-512 BF16 or AMX (Intel since
    Cooper Lake and Sapphire Rapids, AMD since Zen 4), as the kernel lists them. Elsewhere bf16
    is emulated and slower than fp32; `torch.ops.mkldnn._is_mkldnn_bf16_supported()` says yes
    there too, on any AVX-512 CPU. Without /proc/cpuinfo (macOS, Windows): False."""
    try:
        with open(cpuinfo) as file:
            flags = set(file.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_amp(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """Training's autocast dtype (None: fp32). GPUs: bf16 where they compute it natively
    (compute capability >= 8.0), fp16 with a gradient scaler on older ones such as Colab's T4.
    CPUs: bf16 where the CPU computes it natively (cpu_computes_bf16), else fp32; amp='bf16'
    asks for it anyway. 'off': fp32 everywhere."""
    if amp == "off":
        return None
    if device.type == "cuda":
        if amp == "auto":
            return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if amp == "auto":
        return torch.bfloat16 if cpu_computes_bf16() else None
    return torch.bfloat16  # amp='fp16' on a CPU is refused before (helpers/stages.py)


def uses_channels_last(device: torch.device, amp_dtype: Optional[torch.dtype]) -> bool:
    """The memory format of training, by a fixed rule, never by timing (so a run repeats):
    channels_last on GPUs and, with bf16, on CPUs, where convolutions and BatchNorm have faster
    kernels for it (measured: benchmarks/cpu_training.py); contiguous for fp32 on a CPU, as
    every run before this rule."""
    return device.type == "cuda" or amp_dtype == torch.bfloat16


def evaluation_amp(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of evaluation and prediction: training's on a GPU; fp32 on a CPU,
    where evaluating is cheap and every committed accuracy was measured in fp32."""
    return resolve_amp(amp, device) if device.type == "cuda" else None


def precision_name(amp_dtype: Optional[torch.dtype]) -> str:
    """"bf16", "fp16" or "fp32", as metrics.json and checkpoint.pt record it."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype, "fp32")


class ExponentialAverage:
    """Exponential moving average of a network's weights and BatchNorm statistics.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) over the first updates n (the first
    update copies), so short runs are not dominated by the random initial weights. Unlike
    torch.optim.swa_utils.AveragedModel, which reads its update counter back from the GPU on
    every step, the counter lives on the host: an update never makes the CPU wait for the GPU.
    """

    def __init__(self, network: nn.Module, decay: float):
        self.module = copy.deepcopy(network).requires_grad_(False)
        self.decay, self.updates = decay, 0
        # Which tensors are averaged, sorted once: update() runs every training step.
        tensors = [*self.module.parameters(), *self.module.buffers()]
        self._floats = [i for i, tensor in enumerate(tensors) if tensor.is_floating_point()]
        self._counters = [i for i, tensor in enumerate(tensors) if not tensor.is_floating_point()]
        self._averaged = [tensors[i] for i in self._floats]
        self._latest = [tensors[i] for i in self._counters]

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        n = self.updates
        keep = 0.0 if n == 0 else min(self.decay, (1 + n) / (10 + n))
        current = [*network.parameters(), *network.buffers()]
        torch._foreach_lerp_(self._averaged, [current[i] for i in self._floats], 1 - keep)
        for latest, i in zip(self._latest, self._counters):  # BatchNorm's batch counters
            latest.copy_(current[i])
        self.updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


# --- what one run trains --------------------------------------------------------------------

@dataclass
class Training:
    """A network with its optimizer, schedule, loss, precision, weight average and step: what
    the loop updates and a checkpoint holds. Built by start_training."""

    network: nn.Module                  # the network being trained
    model: nn.Module                    # what computes the step: it, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scheduler_per_step: bool
    loss_fn: Callable
    amp_dtype: Optional[torch.dtype]
    scaler: Optional[torch.amp.GradScaler]
    channels_last: bool
    distillation: Optional[Distillation] = None
    ema: Optional[ExponentialAverage] = None
    step: Optional[TrainingStep] = None  # made by make_step, once its kind is chosen
    history: List[dict] = field(default_factory=list)
    best_val_accuracy: Optional[float] = None
    epoch: int = 0                      # epochs completed

    @property
    def evaluated_network(self) -> nn.Module:
        """The network that is validated, tested and shipped: the weight average, if any."""
        return self.ema.module if self.ema is not None else self.network

    def make_step(self, step_class: type = TrainingStep) -> TrainingStep:
        return step_class(self.model, self.optimizer, self.loss_fn, scaler=self.scaler,
                          amp_dtype=self.amp_dtype, channels_last=self.channels_last,
                          distillation=self.distillation)

    def after_step(self) -> None:
        if self.scheduler_per_step:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.network)


def start_training(network: nn.Module, recipe: Recipe, *, epochs: int, steps_per_epoch: int,
                   device: torch.device, amp_dtype: Optional[torch.dtype] = None,
                   channels_last: bool = False,
                   context: DistributedContext = DistributedContext(),
                   teacher: Optional[nn.Module] = None) -> Training:
    """Everything `recipe` trains `network` with, on `device`, at the precision `amp_dtype`
    (None: fp32) and memory format given (resolve_amp and uses_channels_last choose them); the
    step is made, eager, by make_step() (helpers/options/compiled_step.py prepares a compiled one)."""
    network = network.to(device)
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    # Under torchrun, before the optimizer takes the parameters: the wrapper replaces each
    # BatchNorm with one that synchronises its statistics (helpers/distributed.py).
    model = wrap_for_training(network, context, device)
    optimizer = make_optimizer(network, recipe, fused=device.type == "cuda")
    distillation = None
    if teacher is not None:
        teacher = teacher.to(device).eval()
        if channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
        distillation = Distillation(teacher, recipe.distill_weight, recipe.distill_temperature)
    scheduler, per_step = make_scheduler(optimizer, recipe, epochs, steps_per_epoch)
    return Training(
        network, model, optimizer, scheduler, per_step,
        nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing), amp_dtype,
        torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None, channels_last,
        distillation, ExponentialAverage(network, recipe.ema_decay) if recipe.ema_decay else None)


# --- the loop -------------------------------------------------------------------------------

def train_one_epoch(step: TrainingStep, batches: Iterable[Tuple[torch.Tensor, torch.Tensor]], *,
                    epoch: int, after_step: Optional[Callable[[], None]] = None,
                    check_every: int = 1,
                    context: DistributedContext = DistributedContext()) -> Dict[str, float]:
    """One pass over `batches` (labels, or MixUp/CutMix soft targets); returns the mean loss, the
    accuracy (percent, against each target's largest class) and the number of images, summed
    over the ranks."""
    step.model.train()
    device = step.device
    totals = torch.zeros(2, device=device)  # loss sum, correct; on the device, read once
    count, index = 0, 0
    for index, (images, targets) in enumerate(batches, start=1):
        loss, logits, targets = step(images, targets)
        if after_step is not None:  # per-step schedule, EMA
            after_step()
        labels = targets.argmax(1) if targets.ndim == 2 else targets
        totals += torch.stack([loss.float() * len(labels), (logits.argmax(1) == labels).sum().float()])
        count += len(labels)
        # Reading the loss forces a GPU sync, so on GPUs it is checked every few steps only.
        if index % check_every == 0 and not torch.isfinite(totals[0]):
            raise NonFiniteLossError(epoch, index)
    if not torch.isfinite(totals[0]):
        raise NonFiniteLossError(epoch, index)
    totals = torch.cat([totals, torch.full((1,), float(count), device=device)])
    loss_sum, correct, count = sum_over_ranks(totals, context).tolist()
    return {"loss": loss_sum / max(count, 1), "accuracy": 100 * correct / max(count, 1),
            "images": int(count)}


def epoch_source(images: np.ndarray, labels: np.ndarray, augmentation: Augmentation, *,
                 batch_size: int, seed: int, device: torch.device, pipeline: str = "fast",
                 num_workers: int = 0, context: DistributedContext = DistributedContext()
                 ) -> Callable[[int], Iterable[Tuple[torch.Tensor, torch.Tensor]]]:
    """batches(epoch): this rank's share of one epoch's augmented training batches of `images`
    ((N, 32, 32, 3) uint8) and `labels` (N,), drawn from the epoch's own generator. "fast":
    the images are moved to `device` once and augmented there in whole batches; "dataloader":
    per-image torchvision transforms in `num_workers` DataLoader processes."""
    shard = dict(rank=context.rank, world_size=context.world_size)
    if pipeline == "fast":
        on_device = to_device_tensors(images, labels, device)
        return lambda epoch: fast_batches(*on_device, augmentation, batch_size,
                                          epoch_generator(seed, epoch), **shard)
    return lambda epoch: dataloader_batches(images, labels, augmentation, batch_size,
                                            epoch_generator(seed, epoch), num_workers=num_workers,
                                            pin_memory=device.type == "cuda", **shard)


def fit(training: Training, recipe: Recipe, train: Tuple[np.ndarray, np.ndarray],
        val: Tuple[np.ndarray, np.ndarray], *, epochs: int, batch_size: int, seed: int,
        device: torch.device, pipeline: str = "fast", num_workers: int = 0,
        eval_batch_size: int = 1024, test: Optional[Tuple[np.ndarray, np.ndarray]] = None,
        progress: Optional[Callable[[Iterable, int], Iterable]] = None,
        context: DistributedContext = DistributedContext()) -> Iterator[Tuple[dict, bool]]:
    """Train from the epoch after training.epoch up to `epochs` on `train` (images (N, 32, 32, 3)
    uint8, labels (N,)) with the recipe's augmentation. Each epoch: its own seed, its batches,
    the schedule, validation on `val` (of the weight average, if any; none if `val` is empty);
    then it yields (history entry, whether it is the best so far) for the caller to save and
    report. `test` (time-to-accuracy figures only) chooses nothing and is not in an epoch's
    seconds. `progress(batches, epoch)` wraps an epoch's batches (a progress bar)."""
    batches = epoch_source(*train, recipe.augmentation, batch_size=batch_size, seed=seed,
                           device=device, pipeline=pipeline, num_workers=num_workers,
                           context=context)
    # Evaluation computes as training does on a GPU; on a CPU in fp32, contiguous, as every
    # committed accuracy was measured.
    on_gpu = device.type == "cuda"
    amp_dtype = training.amp_dtype if on_gpu else None

    def score(images_and_labels: Tuple[torch.Tensor, torch.Tensor]) -> Dict[str, float]:
        return evaluate(training.evaluated_network, *images_and_labels, eval_batch_size,
                        recipe.tta, amp_dtype, training.channels_last and on_gpu, context)

    val_set = to_device_tensors(*val, device) if len(val[1]) else None
    test_set = to_device_tensors(*test, device) if test is not None else None
    for epoch in range(training.epoch + 1, epochs + 1):
        started = time.perf_counter()
        torch.manual_seed(epoch_seed(seed, epoch))  # the dataloader pipeline's per-image draws repeat
        lr = training.optimizer.param_groups[0]["lr"]
        epoch_batches = batches(epoch)
        # Reading the loss back makes the CPU wait for a GPU: there, every 25 steps.
        train_totals = train_one_epoch(training.step, progress(epoch_batches, epoch) if progress
                                       else epoch_batches, epoch=epoch,
                                       after_step=training.after_step,
                                       check_every=25 if on_gpu else 1, context=context)
        training_s = time.perf_counter() - started  # the steps alone, without validation
        if not training.scheduler_per_step:
            training.scheduler.step()
        validation = score(val_set) if val_set else {"loss": None, "accuracy": None}
        seconds = time.perf_counter() - started  # before the test, which is not the method's
        entry = {"epoch": epoch, "lr": lr, "train_loss": train_totals["loss"],
                 "train_accuracy": train_totals["accuracy"], "val_loss": validation["loss"],
                 "val_accuracy": validation["accuracy"], "seconds": seconds,
                 "test_accuracy": score(test_set)["accuracy"] if test_set else None,
                 "images_per_second": train_totals["images"] / max(training_s, 1e-9)}
        training.history.append(entry)
        training.epoch = epoch
        yield entry, is_new_best(training, entry["val_accuracy"])


def is_new_best(training: Training, val_accuracy: Optional[float]) -> bool:
    """Whether this epoch's weights become best.pt: a new best validation accuracy, or, without
    validation images, every epoch (best.pt then holds the last)."""
    improved = val_accuracy is None or training.best_val_accuracy is None \
        or val_accuracy > training.best_val_accuracy
    if val_accuracy is not None and improved:
        training.best_val_accuracy = val_accuracy
    return improved


@dataclass
class TrainingResult:
    """What training (or loading given weights) leaves for evaluation, plots and metrics."""

    network: nn.Module                  # the model to evaluate (EMA weights when the recipe uses EMA)
    history: List[dict] = field(default_factory=list)
    best_val_accuracy: Optional[float] = None
    epochs_completed: int = 0
    wall_time_s: float = 0.0
    step_kind: str = EAGER              # the training step that ran (helpers/step.py)
    warmup_s: float = 0.0               # compiling and capturing it, before epoch 1
    members: List[nn.Module] = field(default_factory=list)  # model_weights: each loaded network
    precision: str = "fp32"             # of training: "bf16", "fp16" or "fp32"
    memory_format: str = "contiguous"   # of training: "channels_last" or "contiguous"


# --- exact resume ---------------------------------------------------------------------------

def training_state(training: Training) -> Dict[str, Any]:
    """What checkpoint.pt holds of the training; with rng_states() beside it (the global random
    generators), enough to continue as if it had never stopped."""
    return {
        "model": training.network.state_dict(),
        "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(),
        "scaler": training.scaler.state_dict() if training.scaler is not None else None,
        "ema": training.ema.state_dict() if training.ema is not None else None,
        "epoch": training.epoch,
        "history": training.history,
        "best_val_accuracy": training.best_val_accuracy,
        "training_precision": precision_name(training.amp_dtype),
        "memory_format": "channels_last" if training.channels_last else "contiguous",
    }


def resume(training: Training, state: Dict[str, Any]) -> None:
    """Put back what training_state() and rng_states() saved (KeyError, RuntimeError or
    ValueError where the state does not fit this network and recipe)."""
    training.network.load_state_dict(state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    training.scheduler.load_state_dict(state["scheduler"])
    if training.scaler is not None and state["scaler"] is not None:
        training.scaler.load_state_dict(state["scaler"])
    if training.ema is not None:
        training.ema.load_state_dict(state["ema"])
    restore_rng_states(state["rng"])
    training.history = list(state["history"])
    training.best_val_accuracy = state["best_val_accuracy"]
    training.epoch = int(state["epoch"])


def rng_states() -> Dict[str, Any]:
    """Every global random generator the run may draw from, as tensors and plain types."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": repr(random.getstate()),
    }


def restore_rng_states(states: Dict[str, Any]) -> None:
    """Put the global generators back as `rng_states()` found them."""
    torch.set_rng_state(states["torch"])
    if torch.cuda.is_available():
        # Saved on a machine with more GPUs, or fewer: the GPUs both machines have get theirs
        # back, the others keep their own (a run uses the first GPUs, or one per rank).
        for index, state in enumerate(states["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)
    np.random.set_state(("MT19937", states["numpy"].numpy().astype(np.uint32),
                         states["numpy_pos"], 0, 0.0))
    random.setstate(ast.literal_eval(states["python"]))
