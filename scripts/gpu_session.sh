#!/usr/bin/env bash
# The GPU measurements still open, in priority order, for one lent H200 (15 minutes in all,
# start-up and transfers included; at most 10 minutes a command).
#
#   bash scripts/gpu_session.sh prepare            here, before the session: .gpu1 .gpu2 .gpu3
#   bash scripts/gpu_session.sh aside              here, just before the first call
#   bash scripts/gpu_session.sh STAGE [STAGE ...]  on the GPU machine, from the repository root
#   bash scripts/gpu_session.sh restore            here, after the last call
#
# A call carries the repository's tracked files besides its part of the images, 64 MiB in all,
# and the images alone fill about 90 MB. `aside` takes the weights files no GPU stage reads out
# of the tree for the calls (into .gpu-aside/, untracked and ignored, so they do not travel;
# `git rm --cached`, nothing committed) and `restore` puts them back: the released model.pt of
# every run, the int8 files, the redesign's fixtures, and an unfinished CPU run's checkpoint.pt.
# Only results/reference-seed0/model.pt travels: the step check trains from it. Commit nothing
# between `aside` and `restore`: the removals are staged, and a commit would take them along.
#
# The official images travel in three parts, one with each of three back-to-back calls of the
# device tool (../shared/device/README.md), each call naming its folder in `carry`. Nothing
# heavy runs before the reference recipe, which answers the main question:
#
#   first, here:          bash scripts/gpu_session.sh aside
#   call 1, carry .gpu1:  COMMIT=<sha> bash scripts/gpu_session.sh data1 stepcheck
#   call 2, carry .gpu2:  COMMIT=<sha> bash scripts/gpu_session.sh data2
#   call 3, carry .gpu3:  COMMIT=<sha> bash scripts/gpu_session.sh data3 reference improved offset
#   call 4, only with 4 minutes or more left:  ... throughput profile   (or: seeds)
#
# then give the GPU back. Call 3 runs the notebook under papermill: the reference recipe (75
# epochs, all 50,000 official training images, val_size 0, tested on official test images
# 0-999, seed 0; compiled only if call 1's step check passed, else eager), then the improved
# recipe the same way, then airbench94 on the same images (3 runs: the 0-999 offset), packing
# results after each, as far as its 10 minutes allow.
#
# How long each took the last time it ran on an H200 (2026-11-26, torch 2.11, JPEG mirror):
#   data1 / data2 / data3   not yet run on a GPU (here: 5-10 s each, with 16 cores fewer)
#   stepcheck               not yet run on a GPU (estimated 1 minute: compiling and capturing)
#   reference               156 s of training (eager), about 200 s with loading and testing
#   improved                195 s of training (eager), about 240 s in all
#   offset                  not yet run (airbench94: seconds per run, plus its compilation)
#   throughput / profile    17 s / 41 s
#
# After the session, at once: `restore` (then `git rm` an unfinished CPU run's checkpoint.pt,
# which the GPU run supersedes), unpack $OUT/results.tar.gz into the repository (`tar -xzf`),
# commit the results/ folders (at most two model.pt tracked: the best of each recipe), make the
# reference run's executed notebook the committed one with
#   python scripts/render_notebook.py --executed results/reference-official-seed0/final-code.executed.ipynb
# (it drops papermill's injected cell, so the notebook still runs its own parameters cell), and
# regenerate the tables: python scripts/results_tables.py.
#
# Later sessions: seeds (seeds 1 and 2 of both recipes), concurrency (K runs at once against
# one), ablation (the full-length ablation on a validation split), distillation (a quarter-width
# student alone and distilled at full scale: scripts/distillation_cpu.py --train_subset 0
# --epochs 75 --batch_size 256 --device auto). If the machine was replaced between calls, the
# official training images are incomplete: the training stages say so and train nothing (the
# JPEG mirror no longer travels as a fallback: with it, call 3 would carry more than 64 MiB;
# networks trained on the mirror are measured already), and call 4's stages use the time.
#
# Every stage writes into $STAGE/results/ with the layout of this repository's results/, and
# after every stage $OUT/results.tar.gz holds all of it (unpack with `tar -xzf results.tar.gz`
# in the repository root), so a call cut short keeps what it finished; the log is
# $OUT/session.log. COMMIT names the commit that runs (the machine gets no .git).
#
# TINY=1 runs every stage with a few images and one epoch, on any machine, to test this script.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-session-out}
STAGE=${STAGE:-/tmp/gpu-session}
TINY=${TINY:-0}
OFFICIAL=.gpu-data/official     # relative: the executed notebooks must not show local paths
mkdir -p "$OUT" "$STAGE/results"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg CIFAR10_RESNET_COMMIT=${COMMIT:-unknown}
exec > >(tee -a "$OUT/session.log") 2>&1

say() { echo "=== $(date -u +%H:%M:%S) $*"; }
pack() {  # results so far -> $OUT/results.tar.gz (written whole, then renamed)
    tar -czf "$OUT/results.tar.gz.tmp" -C "$STAGE" results && mv "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz"
}

prepare() {  # here, not on the GPU machine: the parts each call carries
    local official=../shared/data/cifar10-official
    rm -rf .gpu1 .gpu2 .gpu3 && mkdir -p .gpu1 .gpu2 .gpu3
    # The test images go with call 3, which tests: the first two calls are the fullest.
    cp $official/unpack.py $official/labels.npz $official/data_batch_1.webp \
        $official/data_batch_2.webp .gpu1/
    cp $official/data_batch_3.webp $official/data_batch_4.webp .gpu2/
    cp $official/data_batch_5.webp $official/test-0-999.webp .gpu3/
    cp -r ../shared/device/wheels-py312 .gpu3/
    local tracked part size over=0 aside_files aside_bytes=0
    # Counted: what a call carries once `aside` has run (the tracked files less those it sets
    # aside, and the untracked ones git does not ignore). After `aside`, none are left to set aside.
    aside_files=$(set_aside)
    [ -z "$aside_files" ] \
        || aside_bytes=$(tr '\n' '\0' <<<"$aside_files" | xargs -0 du -cb | tail -1 | cut -f1)
    tracked=$( (git ls-files -z; git ls-files -z --others --exclude-standard) \
        | grep -zvxF -f <(printf '%s\n' "$aside_files") | xargs -0 du -cb | tail -1 | cut -f1)
    echo "set aside during the calls (bash scripts/gpu_session.sh aside):" \
        "$(grep -c . <<<"$aside_files") files, $(( aside_bytes / 1048576 )) MiB"
    for part in .gpu1 .gpu2 .gpu3; do
        size=$(( $(du -sb $part | cut -f1) + tracked ))
        echo "$part: $(( size / 1048576 )) MiB with the repository's files (64 MiB at most: $(( (67108864 - size) / 1024 )) KiB to spare)"
        [ "$size" -le 67108864 ] || over=1
    done
    [ "$over" = 0 ] || { echo "over the 64 MiB a call carries: track fewer or smaller files"; return 1; }
}

GPU_READS=results/reference-seed0/model.pt  # the step check's trained weights
ASIDE=.gpu-aside                            # ignored by .gitignore's /.gpu*/

set_aside() {  # the tracked weights files no GPU stage reads, one per line
    git ls-files 'results/*.pt' | grep -vxF "$GPU_READS"
}

aside() {
    local path unfinished
    unfinished=$(git ls-files 'results/*/checkpoint.pt')
    [ -z "$unfinished" ] || echo "an unfinished CPU run's checkpoint is tracked ($unfinished):" \
        "stop that run first; the GPU run supersedes it"
    set_aside | while read -r path; do
        mkdir -p "$ASIDE/$(dirname "$path")" && mv "$path" "$ASIDE/$path" && git rm -q --cached "$path"
    done
    echo "set aside in $ASIDE/ (restore with: bash scripts/gpu_session.sh restore):"
    (cd "$ASIDE" && find . -type f | sed 's|^\./|  |' | sort)
}

restore() {
    local path
    [ -d "$ASIDE" ] || { echo "nothing set aside"; return; }
    (cd "$ASIDE" && find . -type f | sed 's|^\./||') | while read -r path; do
        mkdir -p "$(dirname "$path")" && mv "$ASIDE/$path" "$path" && git reset -q -- "$path"
    done
    rm -rf "$ASIDE"
    git status --short results/
}

data1() { python3 .gpu1/unpack.py "$OFFICIAL" --batches 1 2 --no-test; }
data2() { python3 .gpu1/unpack.py "$OFFICIAL" --batches 3 4 --no-test --source .gpu2; }
data3() {
    python3 .gpu1/unpack.py "$OFFICIAL" --batches 5 --source .gpu3  # and test images 0-999
    [ "$TINY" = 1 ] && return  # papermill is installed here already
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu3/wheels-py312/*.whl
    python3 -m ipykernel install --user --name python3 >/dev/null
}

[ "$TINY" = 1 ] || export PYTHONPATH=/tmp/site:${PYTHONPATH:-}  # papermill, from the wheels

training_data() {  # the official folders, if all 50,000 training images arrived
    local count
    count=$(find "$OFFICIAL/train" -name '*.png' 2>/dev/null | wc -l)
    if [ "$count" -eq 50000 ]; then DATA=$OFFICIAL; return; fi
    say "only $count of the 50,000 official training images are here (was the machine replaced between calls?): nothing trained; use the time for call 4's stages"
    return 1
}

stepcheck() {  # stage 1: the compiled and captured steps against the eager one
    local folder="$STAGE/results/gpu-step-check"
    mkdir -p "$folder"
    python3 -m pytest -q -rA -p no:cacheprovider tests/test_step_gpu.py \
        --junitxml="$folder/junit.xml" 2>&1 | tee "$folder/log.txt"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$folder/gpu-info.txt" 2>&1
    python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])" >> "$folder/gpu-info.txt"
}

compile_setting() {  # what compile="auto" takes once VERIFIED_ON_GPU lists what passed here
    python3 scripts/step_check.py "$STAGE/results/gpu-step-check/junit.xml" | grep -qx "compiled + CUDA graph" \
        && echo True || echo auto
}

throughput() {
    local device=cuda extra=()
    [ "$TINY" = 1 ] && device=cpu extra=(--batches 1 --batch-size 8)
    mkdir -p "$STAGE/results/benchmarks"
    python3 benchmarks/throughput.py --device $device --what train --json "${extra[@]}" \
        2>&1 | tee "$STAGE/results/benchmarks/$device-train-compiled.txt"
}

profile() {
    local extra=(--compile "$(compile_setting)")
    [ "$TINY" = 1 ] && extra=(--steps 2 --batch-size 16 --compile False)
    mkdir -p "$STAGE/results/benchmarks"
    python3 benchmarks/profile_step.py --recipe reference --json "${extra[@]}" \
        2>&1 | tee "$STAGE/results/benchmarks/profile-reference-$(compile_setting).txt"
}

notebook_run() {  # folder, then papermill parameters: the notebook itself, 75 epochs, val_size 0
    local folder=$1; shift
    local target="$STAGE/results/$folder" epochs=75 tiny=()
    [ "$TINY" = 1 ] && epochs=1 tiny=(-p train_subset 500 -p batch_size 64)
    training_data || return 1
    mkdir -p "$target" && rm -rf "outputs/$folder"
    python3 -m papermill final-code.ipynb "$target/final-code.executed.ipynb" --log-output \
        -p data_source folder -p data_dir "$DATA" -p epochs "$epochs" -p val_size 0 \
        -p test_each_epoch True -p compile "$(compile_setting)" -p output_dir "outputs/$folder" \
        "${tiny[@]}" "$@" 2>&1 | tee "$target/papermill.log"
    cp "outputs/$folder/metrics.json" "outputs/$folder/model.pt" "$target/" 2>/dev/null
}

reference() { notebook_run reference-official-seed0 -p seed 0; }
improved() { notebook_run improved-official-seed0 -p seed 0 -p recipe improved; }
seeds() {
    for seed in 1 2; do
        notebook_run "reference-official-seed$seed" -p seed $seed
        notebook_run "improved-official-seed$seed" -p seed $seed -p recipe improved
    done
}

offset() {  # stage 3: airbench94 on the official training images, tested on images 0-999
    local runs=3
    [ "$TINY" = 1 ] && runs=1
    training_data || return 1
    python3 scripts/calibrate_mirror.py --measure offset --data_dir "$DATA" --only airbench94 \
        --runs94 $runs --out "$STAGE/results/calibration" 2>&1 | tee "$STAGE/results/calibration-offset-log.txt"
}

concurrency() {
    local epochs=5
    [ "$TINY" = 1 ] && epochs=1
    training_data || return 1
    python3 scripts/concurrent_runs.py --runs 4 --out "$STAGE/results/concurrency" -- \
        --epochs $epochs --val_size 0 --data_source folder --data_dir "$DATA" \
        --compile "$(compile_setting)"
}

ablation() {
    local epochs=75 extra=()
    [ "$TINY" = 1 ] && epochs=1 extra=(-- --train_subset 200 --val_size 50)
    training_data || return 1
    python3 scripts/ablation.py --data_source folder --data_dir "$DATA" --epochs "$epochs" \
        --variants full --out "$STAGE/results/ablation-official-75epochs" --work /tmp/ablation \
        --deadline_s "${ABLATION_DEADLINE_S:-540}" "${extra[@]}"
}

case "${1:-}" in prepare|aside|restore) "$1"; exit ;; esac
for stage in "$@"; do
    say "stage $stage"
    started=$SECONDS
    "$stage" || say "stage $stage failed with status $?"
    say "stage $stage took $((SECONDS - started)) s"
    pack
done
say "done: $OUT/results.tar.gz"
