#!/usr/bin/env bash
# Every GPU measurement the open issues need, in priority order, for one lent GPU session.
#
#   bash scripts/gpu_session.sh [stage ...]        (default: all stages, in this order)
#
# Stages: calibrate (airbench on the mirror, ~3 min), throughput (three training pipelines side
# by side, ~3 min), profile (the compiled step's GPU busy share, ~1 min), reference and improved
# (75-epoch runs with the fast step and test accuracy after every epoch, ~2-4 min each),
# ablation (the full-length ablation, ~10 min with the fast step).
#
# On the device machine: run from the repository root with `.gpu/` carried (see
# ../shared/device/README.md: the data archive, unpack.py and wheels-py312/). Results are
# staged under $STAGE/results/ with the layout of this repository's results/ and packed into
# $OUT/results.tar.gz after every stage, so a session cut short keeps what it finished; the
# whole log is $OUT/session.log. Unpack with `tar -xzf results.tar.gz` in the repository root.
#
# TINY=1 runs every stage on a few synthetic images on any machine, to test this script.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-session-out}
STAGE=${STAGE:-/tmp/gpu-session}
DATA=${DATA:-/tmp/cifar10-jpeg}
TINY=${TINY:-0}
mkdir -p "$OUT" "$STAGE/results"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
exec > >(tee -a "$OUT/session.log") 2>&1

pack() {  # results so far -> $OUT/results.tar.gz (written whole, then renamed)
    tar -czf "$OUT/results.tar.gz.tmp" -C "$STAGE" results && mv "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz"
}

say() { echo "=== $(date -u +%H:%M:%S) $*"; }

setup() {
    if [ -d .gpu/wheels-py312 ]; then
        python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/wheels-py312/*.whl
        export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
        python3 -m ipykernel install --user --name python3 >/dev/null
    fi
    if [ "$TINY" = 1 ]; then
        SOURCE=synthetic EPOCHS=1
        DATA_ARGS=(-p data_source synthetic -p train_subset 200 -p test_subset 100)
    else
        SOURCE=folder EPOCHS=75
        [ -d "$DATA/train" ] || python3 .gpu/unpack.py "$DATA"
        DATA_ARGS=(-p data_source folder -p data_dir "$DATA")
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$STAGE/results/gpu-info.txt" 2>&1 || true
    python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])" >> "$STAGE/results/gpu-info.txt"
    git rev-parse HEAD >> "$STAGE/results/gpu-info.txt" 2>/dev/null || true
}

calibrate() {
    local runs=(--runs94 5 --runs96 2)
    [ "$TINY" = 1 ] && runs=(--runs94 1 --runs96 1)
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/wheels-py312/airbench-*.whl 2>/dev/null
    python3 scripts/calibrate_mirror.py --data_dir "$DATA" "${runs[@]}" \
        --out "$STAGE/results/calibration" 2>&1 | tee "$STAGE/results/calibration-log.txt"
    mkdir -p "$STAGE/results/calibration" && mv "$STAGE/results/calibration-log.txt" "$STAGE/results/calibration/log.txt"
}

throughput() {
    local device=cuda extra=()
    [ "$TINY" = 1 ] && device=cpu extra=(--batches 1 --batch-size 8)
    mkdir -p "$STAGE/results/benchmarks"
    python3 benchmarks/throughput.py --device $device --what train --json "${extra[@]}" \
        2>&1 | tee "$STAGE/results/benchmarks/$device-train-compiled.txt"
}

profile() {
    local extra=()
    [ "$TINY" = 1 ] && extra=(--steps 2 --batch-size 16 --compile False)
    mkdir -p "$STAGE/results/benchmarks"
    python3 benchmarks/profile_step.py --recipe reference --json "${extra[@]}" \
        2>&1 | tee "$STAGE/results/benchmarks/profile-reference-compiled.txt"
}

notebook_run() {  # folder, then papermill parameters
    local folder=$1; shift
    local target="$STAGE/results/$folder"
    mkdir -p "$target" && rm -rf "/tmp/runs/$folder"
    python3 -m papermill final-code.ipynb "$target/final-code.executed.ipynb" --log-output \
        "${DATA_ARGS[@]}" -p epochs "$EPOCHS" -p val_size 0 -p test_each_epoch True \
        -p output_dir "/tmp/runs/$folder" "$@" 2>&1 | tee "$target/papermill.log"
    cp "/tmp/runs/$folder/metrics.json" "/tmp/runs/$folder/model.pt" "$target/" 2>/dev/null
}

reference() { notebook_run reference-compiled-seed0 -p seed 0; }

improved() { notebook_run improved-compiled-seed0 -p seed 0 -p recipe improved; }

ablation() {
    local extra=() epochs=$EPOCHS
    [ "$TINY" = 1 ] && extra=(-- --train_subset 200 --val_size 50 --test_subset 50) && epochs=1
    python3 scripts/ablation.py --data_source "$SOURCE" --data_dir "$DATA" --epochs "$epochs" \
        --variants full --out "$STAGE/results/ablation-75epochs" --work /tmp/ablation \
        --deadline_s "${ABLATION_DEADLINE_S:-540}" "${extra[@]}"
}

setup
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(calibrate throughput profile reference improved ablation)
for stage in "${stages[@]}"; do
    say "stage $stage"
    started=$SECONDS
    "$stage" || say "stage $stage failed with status $?"
    say "stage $stage took $((SECONDS - started)) s"
    pack
done
say "done: $OUT/results.tar.gz"
