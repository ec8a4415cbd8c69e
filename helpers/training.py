"""Training: optimizer and schedule from a Recipe, train_one_epoch, evaluate, and the epoch loop
with per-epoch checkpoints, exact resume, best-on-validation selection and clear stops."""
from __future__ import annotations

import copy
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .augment import dataloader_batches, epoch_batches, epoch_generator, epoch_seed, \
    fast_batches, normalize, to_device_tensors
from .checkpoints import (CheckpointError, DiskFullError, restore_rng_states, rng_states,
                          save_checkpoint)
from .config import RunConfig
from .data import CifarData, usable_cpus
from .distributed import DistributedContext, sum_over_ranks, wrap_for_training
from .errors import ExplainedError
from .evaluation import loss_and_hits
from .launch import in_notebook, launched_by, rerun_hint, setting
from .model import device_of
from .recipes import Recipe
from .step import EAGER, Distillation, TrainingStep, choose_step_kind, prepare_step


class NonFiniteLossError(ExplainedError, RuntimeError):
    """The training loss became NaN or infinite; the run stops instead of training on."""


# --- pieces ---------------------------------------------------------------------------------

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


def resolve_amp(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype: bf16 on GPUs that compute it natively (compute capability >= 8.0), fp16
    (with a gradient scaler) on older GPUs such as Colab's T4, none on the CPU."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


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


def progress_mode(requested: str) -> str:
    """'bar' in an interactive notebook or terminal; 'lines' under papermill or in logs."""
    if requested != "auto":
        return requested
    if launched_by("papermill") or os.environ.get("CI"):
        return "lines"
    if in_notebook() or sys.stderr.isatty():
        return "bar"
    return "lines"


class DisplayedText:
    """Where the progress bar writes in a Jupyter kernel: one output, updated in place.

    Jupyter saves an updated display (update_display_data) as it was last updated, and so do
    nbconvert and papermill, which execute without a browser; a widget bar (tqdm.notebook)
    is saved as it was first drawn, "0%|          | 0/7", however far it got."""

    encoding = "utf-8"  # tqdm draws its bar in block characters, not '#'

    def __init__(self):
        self.handle = None

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if not text:  # tqdm clearing its line, or ending it
            return
        from IPython.display import display

        if self.handle is None:
            self.handle = display({"text/plain": text}, raw=True, display_id=True)
        else:
            self.handle.update({"text/plain": text}, raw=True)

    def flush(self) -> None:
        pass


def progress_bar(batches: Iterable, total: int, description: str, output=None) -> Iterable:
    """`batches` with a tqdm bar: in a Jupyter kernel one line updated in place (`output`, a
    DisplayedText), kept at its last state; in a terminal on stderr, cleared when done."""
    from tqdm import tqdm

    in_kernel = isinstance(output, DisplayedText)
    # miniters=1: tqdm's monitor thread never redraws the bar from outside this loop.
    return tqdm(batches, total=total, desc=description, file=output or sys.stderr,
                leave=in_kernel, miniters=1, mininterval=0.5 if in_kernel else 0.1)


# --- one epoch ------------------------------------------------------------------------------

def train_one_epoch(step: TrainingStep, batches: Iterable[Tuple[torch.Tensor, torch.Tensor]], *,
                    epoch: int, after_step: Optional[Callable[[], None]] = None,
                    check_every: int = 1,
                    context: DistributedContext = DistributedContext()) -> Dict[str, float]:
    """One pass over `batches` (labels, or MixUp/CutMix soft targets); returns the mean loss and
    the accuracy (percent, against each target's largest class) over the epoch."""
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
            _stop_on_non_finite(epoch, index)
    if not torch.isfinite(totals[0]):
        _stop_on_non_finite(epoch, index)
    totals = torch.cat([totals, torch.full((1,), float(count), device=device)])
    loss_sum, correct, count = sum_over_ranks(totals, context).tolist()
    return {"loss": loss_sum / max(count, 1), "accuracy": 100 * correct / max(count, 1)}


def _stop_on_non_finite(epoch: int, step: int) -> None:
    raise NonFiniteLossError(
        f"the training loss became NaN or infinite in epoch {epoch} by step {step}; the run is "
        "stopped and checkpoint.pt still holds the last completed epoch. The learning rate is "
        "probably too high for this batch size: lower lr (e.g. by 10x) and run again.")


def tta_views(batch: torch.Tensor, flip: bool, translate: int) -> List[Tuple[float, torch.Tensor]]:
    """(weight, view) pairs whose weighted logits are averaged: the image (and its mirror);
    with `translate`, half the weight goes to copies shifted by -n and +n pixels on both axes
    (reflect padding), as airbench's tta_level=2."""
    shifted = [batch]
    if translate:
        padded = F.pad(batch, (translate,) * 4, mode="reflect")
        size = batch.shape[-1]
        shifted += [padded[..., :size, :size], padded[..., 2 * translate:, 2 * translate:]]
    views = []
    for position, image in enumerate(shifted):
        weight = 1.0 if not translate else (0.5 if position == 0 else 0.25)
        mirrored = [image, image.flip(-1)] if flip else [image]
        views += [(weight / len(mirrored), view) for view in mirrored]
    return views


@torch.inference_mode()
def predict_logits(network: nn.Module, images: torch.Tensor, batch_size: int,
                   tta_flip: bool = False, amp_dtype: Optional[torch.dtype] = None,
                   channels_last: bool = False, tta_translate: int = 0) -> torch.Tensor:
    """Logits (float32) for uint8 images (N, 3, 32, 32) on the network's device, in eval mode,
    averaged over the test-time views (see tta_views)."""
    network.eval()
    device = device_of(network)  # an int8 network: the CPU, wherever the images are
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = normalize(images[start:start + batch_size].to(device).float() / 255)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outputs.append(sum(weight * network(view).float()
                               for weight, view in tta_views(batch, tta_flip, tta_translate)))
    return torch.cat(outputs) if outputs else torch.zeros(0, 10, device=device)


def evaluate(network: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
             tta_flip: bool = False, amp_dtype: Optional[torch.dtype] = None,
             channels_last: bool = False, context: DistributedContext = DistributedContext(),
             tta_translate: int = 0) -> Dict[str, float]:
    """Loss and accuracy (percent) on a labelled set; under DDP each rank takes a shard."""
    shard = slice(context.rank, None, context.world_size)
    logits = predict_logits(network, images[shard], batch_size, tta_flip, amp_dtype, channels_last,
                            tta_translate)
    totals = loss_and_hits(logits, labels[shard].to(logits.device))
    loss_sum, correct, count = sum_over_ranks(totals, context).tolist()
    return {"loss": loss_sum / max(count, 1), "accuracy": 100 * correct / max(count, 1)}


# --- the run --------------------------------------------------------------------------------

@dataclass
class TrainingResult:
    """What the epoch loop leaves behind for evaluation, plots and metrics."""

    network: nn.Module                  # the model to evaluate (EMA weights when the recipe uses EMA)
    history: List[dict] = field(default_factory=list)
    best_val_accuracy: Optional[float] = None
    epochs_completed: int = 0
    wall_time_s: float = 0.0
    step_kind: str = EAGER              # the training step that ran (helpers/step.py)
    warmup_s: float = 0.0               # compiling and capturing it, before epoch 1
    members: List[nn.Module] = field(default_factory=list)  # model_weights: each loaded network


class Trainer:
    """The epoch loop: builds optimizer, schedule, EMA and batches from the config and recipe,
    saves `checkpoint.pt` after every epoch and `best.pt` on the best validation accuracy."""

    def __init__(self, config: RunConfig, recipe: Recipe, data: CifarData, network: nn.Module,
                 device: torch.device, context: DistributedContext = DistributedContext(),
                 teacher: Optional[nn.Module] = None):
        self.config, self.recipe, self.data, self.device, self.context = config, recipe, data, device, context
        self.network = network.to(device)
        self.channels_last = device.type == "cuda"
        if self.channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        self.model = wrap_for_training(self.network, context, device)
        self.amp_dtype = resolve_amp(config.amp, device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.optimizer = make_optimizer(self.network, recipe, fused=device.type == "cuda")
        self.distillation = None
        if teacher is not None:
            teacher = teacher.to(device).eval()
            if self.channels_last:
                teacher = teacher.to(memory_format=torch.channels_last)
            self.distillation = Distillation(teacher, recipe.distill_weight, recipe.distill_temperature)
        self.step: Optional[TrainingStep] = None  # built, and warmed up, by prepare_step()
        self.warmup_s = 0.0
        self.train_images, self.train_labels = to_device_tensors(data.train.images, data.train.labels, device)
        self.val_images, self.val_labels = to_device_tensors(data.val.images, data.val.labels, device)
        if config.test_each_epoch:  # for time-to-accuracy figures only; never used for choices
            self.test_images, self.test_labels = to_device_tensors(data.test.images, data.test.labels, device)
        self.steps_per_epoch = len(epoch_batches(len(data.train), config.batch_size,
                                                 epoch_generator(0, 0), 0, context.world_size))
        self.scheduler, self.scheduler_per_step = make_scheduler(
            self.optimizer, recipe, config.epochs, self.steps_per_epoch)
        self.ema = None
        if recipe.ema_decay:
            self.ema = ExponentialAverage(self.network, recipe.ema_decay)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        self.history: List[dict] = []
        self.best_val_accuracy: Optional[float] = None
        self.start_epoch = 1
        self.checkpoint_path = os.path.join(config.output_dir, "checkpoint.pt")
        self.best_path = os.path.join(config.output_dir, "best.pt")
        self.progress = progress_mode(config.progress) if context.is_main else "none"
        # One line for every epoch's bar in a notebook, so that the cell ends with one bar.
        self.bar_output = DisplayedText() if in_notebook() else None

    # The network whose weights are evaluated and shipped.
    @property
    def evaluated_network(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.network

    def batches(self, epoch: int) -> Iterable[Tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of one epoch's training batches, from the chosen pipeline."""
        generator = epoch_generator(self.config.seed, epoch)
        shard = dict(rank=self.context.rank, world_size=self.context.world_size)
        if self.config.pipeline == "fast":
            return fast_batches(self.train_images, self.train_labels, self.recipe.augmentation,
                                self.config.batch_size, generator, **shard)
        return dataloader_batches(self.data.train.images, self.data.train.labels,
                                  self.recipe.augmentation, self.config.batch_size, generator,
                                  num_workers=self.workers,
                                  pin_memory=self.device.type == "cuda", **shard)

    @property
    def workers(self) -> int:
        """DataLoader workers of pipeline="dataloader": num_workers, or one per usable CPU."""
        return usable_cpus() if self.config.num_workers is None else self.config.num_workers

    def state(self, epoch: int) -> dict:
        return {
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": epoch,
            "history": self.history,
            "best_val_accuracy": self.best_val_accuracy,
            "config": self.config.to_dict(),
            "recipe": self.recipe.to_dict(),
            "rng": rng_states(),
        }

    def resume_from_checkpoint(self, state: dict) -> None:
        """Restore everything `state()` saved, from a checkpoint `load_resumable` has checked."""
        try:
            self.network.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.scaler is not None and state["scaler"] is not None:
                self.scaler.load_state_dict(state["scaler"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise CheckpointError(f"checkpoint {self.checkpoint_path!r} does not fit this model "
                                  f"and recipe: {error}") from None
        restore_rng_states(state["rng"])
        self.history = list(state["history"])
        self.best_val_accuracy = state["best_val_accuracy"]
        self.start_epoch = int(state["epoch"]) + 1
        if self.start_epoch > self.config.epochs:
            self.log(f"{self.checkpoint_path} holds all {self.config.epochs} epochs: the run is "
                     f"already complete, nothing is trained (set epochs above {self.config.epochs} "
                     "to train longer); its weights are evaluated below")
        else:
            self.log(f"resumed from {self.checkpoint_path} after epoch {state['epoch']} "
                     f"of {self.config.epochs}")

    def log(self, message: str) -> None:
        if self.context.is_main and self.progress != "none":
            print(message, flush=True)

    def after_step(self) -> None:
        if self.scheduler_per_step:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.network)

    def run_epoch(self, epoch: int) -> dict:
        """Train one epoch, validate, and return its history entry."""
        started = time.perf_counter()
        torch.manual_seed(epoch_seed(self.config.seed, epoch))  # per-image transforms, cutout
        lr = self.optimizer.param_groups[0]["lr"]
        batches = self.batches(epoch)
        if self.progress == "bar":
            batches = progress_bar(batches, self.steps_per_epoch,
                                   f"epoch {epoch}/{self.config.epochs}", self.bar_output)
        train = train_one_epoch(self.step, batches, epoch=epoch, after_step=self.after_step,
                                check_every=1 if self.device.type == "cpu" else 25,
                                context=self.context)
        if not self.scheduler_per_step:
            self.scheduler.step()
        val = {"loss": None, "accuracy": None}
        if len(self.data.val):
            val = self.evaluate(self.val_images, self.val_labels)
        seconds = time.perf_counter() - started  # the test evaluation below is not counted
        test_accuracy = None
        if self.config.test_each_epoch:
            test_accuracy = self.evaluate(self.test_images, self.test_labels)["accuracy"]
        return {"epoch": epoch, "lr": lr, "train_loss": train["loss"],
                "train_accuracy": train["accuracy"], "val_loss": val["loss"],
                "val_accuracy": val["accuracy"], "seconds": seconds,
                "test_accuracy": test_accuracy}

    def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
        return evaluate(self.evaluated_network, images, labels, self.config.eval_batch_size,
                        self.recipe.tta_flip, self.amp_dtype, self.channels_last, self.context,
                        self.recipe.tta_translate)

    def prepare_step(self) -> TrainingStep:
        """The training step `compile` asks for on this machine, compiled and captured now, on
        a batch that training never uses (epoch 0's), so its cost is not in any epoch's time."""
        kind, why = choose_step_kind(self.config.compile, self.device, scaler=self.scaler,
                                     distributed=self.context.enabled,
                                     distillation=self.distillation is not None)

        def make(step_class):
            return step_class(self.model, self.optimizer, self.loss_fn, scaler=self.scaler,
                              amp_dtype=self.amp_dtype, channels_last=self.channels_last,
                              distillation=self.distillation)

        sizes = sorted({len(b) for b in epoch_batches(len(self.data.train), self.config.batch_size,
                                                      epoch_generator(0, 0), 0,
                                                      self.context.world_size)}, reverse=True)
        batch = next(iter(self.batches(0))) if kind != EAGER else None
        self.step, self.warmup_s, fallbacks = prepare_step(kind, make, batch, sizes)
        warmed = f", {self.warmup_s:.1f} s to compile and capture before epoch 1" if self.warmup_s else ""
        loading = f"; {self.workers} DataLoader workers" if self.config.pipeline == "dataloader" else ""
        self.log(f"training step: {self.step.kind} ({why}{warmed}){loading}"
                 + "".join(f"\n  {note}" for note in fallbacks))
        return self.step

    def fit(self) -> TrainingResult:
        """Train from start_epoch to config.epochs; an interrupt keeps the last whole epoch."""
        if self.step is None:
            self.prepare_step()
        started = time.perf_counter()
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.config.epochs + 1):
                entry = self.run_epoch(epoch)
                self.history.append(entry)
                self.log(format_epoch(entry, self.config.epochs))
                self.save(epoch, entry)
        except KeyboardInterrupt:
            done = epoch - 1
            self.log(f"\nInterrupted during epoch {epoch}. "
                     + (f"{self.checkpoint_path} holds epoch {done}; to continue, set "
                        f"{setting('resume', True)}, the other parameters as they were, and "
                        f"{rerun_hint()}."
                        if done >= 1 else "No epoch was completed."))
            raise
        return TrainingResult(self.evaluated_network, self.history, self.best_val_accuracy,
                              len(self.history), time.perf_counter() - started, self.step.kind,
                              self.warmup_s)

    def save(self, epoch: int, entry: dict) -> None:
        """best.pt on a new best validation accuracy (or, without a validation split, every
        epoch, so it holds the last), then checkpoint.pt every epoch: a checkpoint never
        records a best epoch whose best.pt is missing."""
        improved = entry["val_accuracy"] is None or self.best_val_accuracy is None \
            or entry["val_accuracy"] > self.best_val_accuracy
        if entry["val_accuracy"] is not None and improved:
            self.best_val_accuracy = entry["val_accuracy"]
        if not self.context.is_main:
            return
        try:
            if improved:
                save_checkpoint(self.best_path, {"model": self.evaluated_network.state_dict(),
                                                 "epoch": epoch, "val_accuracy": entry["val_accuracy"],
                                                 "config": self.config.to_dict()})
            save_checkpoint(self.checkpoint_path, self.state(epoch))
        except DiskFullError as error:
            # The previous epoch's checkpoint (or the one resumed from) is on disk, intact.
            then = (f"{self.checkpoint_path} holds epoch {epoch - 1}: with room again, continue "
                    f"with {setting('resume', True)}" if epoch > 1 else
                    "no epoch was saved: with room again, start the run again as it was")
            raise DiskFullError(error.errno, f"{error}. Training stopped in epoch {epoch}; "
                                f"{then}") from None


def format_history(history: List[dict]) -> str:
    """Every epoch's learning rate, losses, accuracies (percent) and seconds as one table."""
    tested = any(h.get("test_accuracy") is not None for h in history)
    lines = [f"{'epoch':>5} {'lr':>9} {'train loss':>10} {'train acc':>9} {'val loss':>8} "
             f"{'val acc':>7}{' test acc' if tested else ''} {'seconds':>7}"]

    def number(value, width, digits):
        return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    for h in history:
        lines.append(f"{h['epoch']:>5} {h['lr']:>9.4g} {number(h['train_loss'], 10, 3)} "
                     f"{number(h['train_accuracy'], 9, 2)} {number(h['val_loss'], 8, 3)} "
                     f"{number(h['val_accuracy'], 7, 2)}"
                     + (f" {number(h.get('test_accuracy'), 8, 2)}" if tested else "")
                     + f" {h['seconds']:>7.1f}")
    return "\n".join(lines)


def format_epoch(entry: dict, epochs: int) -> str:
    """One concise log line per epoch."""
    val = "" if entry["val_accuracy"] is None else \
        f"  val loss {entry['val_loss']:.3f} acc {entry['val_accuracy']:5.2f}%"
    test = "" if entry.get("test_accuracy") is None else f"  (test acc {entry['test_accuracy']:5.2f}%)"
    return (f"epoch {entry['epoch']:>3}/{epochs}  lr {entry['lr']:.4g}  train loss "
            f"{entry['train_loss']:.3f} acc {entry['train_accuracy']:5.2f}%{val}  "
            f"{entry['seconds']:.1f} s{test}")
