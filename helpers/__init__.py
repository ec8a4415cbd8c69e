"""Helper modules for final-code.ipynb: one module per stage of the pipeline.

config     parameters -> a validated, frozen RunConfig
recipes    the training recipes ("reference", "improved"), all their settings in one place
data       data sources, class-balanced subset, stratified validation split, integrity checks
augment    augmentation: per-image torchvision presets and the batched on-device fast path
model      the ResNet (BasicBlocks [4, 4, 3] at 64/128/256, 4,697,162 parameters) and its
           smaller students (width_multiplier, blocks)
quantization post-training static int8 quantization for CPU inference
weights    model.pt: the network (float or int8, any size) each weights file rebuilds
sizes      smaller networks measured side by side, and the size/accuracy table
training   train_one_epoch, evaluate, the epoch loop with checkpoints and resume
checkpoints atomic writes and safe (weights_only) checkpoint loading
distributed torchrun / DistributedDataParallel support
plots      figures: take data, return a matplotlib figure
inference  predict() and the Kaggle submission (with a restricted unpickler)
report     metrics.json and the final summary
pipeline   the stages strung together, shared by the notebook and `python -m helpers.cli`
launch     how a run was started, to word messages as it is typed there
environment a torch and torchvision that belong together
"""
from .environment import PackageError, require_matching_torchvision
from .launch import in_notebook

try:
    require_matching_torchvision()
except PackageError as error:
    if in_notebook():
        raise  # shown as its one-line message
    raise SystemExit(f"error: {error}") from None  # one line, not a traceback
