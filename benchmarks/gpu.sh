#!/usr/bin/env bash
# The whole GPU set in one go (under 8 minutes on an H100/H200): the CUDA tests, then every GPU benchmark,
# each bounded in time, all JSON (and one log per step) into OUT_DIR.
#
#   benchmarks/prepare_gpu_carry.sh          # once, where ../shared/datasets exists: MSRS test -> .devcarry/
#   benchmarks/gpu.sh OUT_DIR                # on the GPU machine, from the working tree (+ .devcarry)
#   benchmarks/gpu.sh OUT_DIR --smoke        # the same steps at tiny sizes on a CPU (checks the wiring)
#
# Needs nothing outside the working tree: data from .devcarry/datasets (or $FUSEBENCH_DATA), random weights,
# FUSEBENCH_OFFLINE=1. Steps: tests (pytest: tests marked gpu or taking the `cuda` fixture), maefuse_speed
# (ViT-L 640x640, fp32/TF32/bf16 x batch 1..64 with SDPA as torch picks it, beside the official-style loop),
# maefuse_attention (bf16 batch 32 under each SDPA backend: flash, efficient, math), metrics_speed (CUDA
# batches), run_speed_mean (fusebench run end to end, sequential loop vs pipeline), run_speed_maefuse (ViT-L
# bf16 end to end: decode, fuse, score, PNG write), train_speed (when benchmarks/train_speed.py exists).
# OUT_DIR/steps.tsv lists each step's exit code and seconds; the total budget is $GPU_SH_BUDGET_S (450 s).
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu.sh OUT_DIR [--smoke]}
MODE=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export FUSEBENCH_DATA=${FUSEBENCH_DATA:-$ROOT/.devcarry/datasets}
export FUSEBENCH_HOME=$OUT/home FUSEBENCH_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
export PYTHONPATH=$OUT/.plugin:$ROOT${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python}
BUDGET=${GPU_SH_BUDGET_S:-450}
START=$SECONDS
if [ ! -d "$FUSEBENCH_DATA/msrs/test/ir" ]; then
  echo "gpu.sh: no MSRS test pairs under $FUSEBENCH_DATA; run benchmarks/prepare_gpu_carry.sh first" >&2
fi

step() {  # step NAME LIMIT_S COMMAND...: run bounded by LIMIT_S and by what is left of the budget
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - (SECONDS - START)))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    printf '%s\tskipped\t0\n' "$name" >> "$OUT/steps.tsv"; echo "== $name: skipped (budget spent)"; return
  fi
  echo "== $name (at most ${limit}s)"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$OUT/steps.tsv"
  echo "   rc=$rc in $((SECONDS - t0))s (log: $OUT/$name.log)"
  tail -n 3 "$OUT/$name.log" | sed 's/^/   | /'
}

mkdir -p "$OUT/.plugin"
cat > "$OUT/.plugin/gpu_select.py" <<'PLUGIN'
"""pytest plugin: keep only the tests marked gpu or taking the `cuda` fixture."""


def pytest_collection_modifyitems(config, items):
    keep = [i for i in items if i.get_closest_marker("gpu") or "cuda" in getattr(i, "fixturenames", ())]
    drop = [i for i in items if i not in keep]
    items[:] = keep
    config.hook.pytest_deselected(items=drop)
PLUGIN
: > "$OUT/steps.tsv"
{ nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ "$MODE" = "--smoke" ]; then
  DEV=cpu; TESTS="tests/test_run_pipeline.py tests/test_benchmarks.py"
  MAE=(--arch test --size 64x64 --warp 64 --batch-sizes 1,2 --min-time 0.05)
  ATT=(--arch test --size 64x64 --warp 64 --batch-sizes 2 --min-time 0.05)
  MET=(--sizes 96x64 --batch-sizes 1 --metrics EN,SD --repeats 1)
  RUN=(--metrics EN,SD --batch-sizes 1,4); RUNM=(--method maefuse-test --metrics EN --batch-sizes 4)
  TRN=(--method maefuse-test --batch-size 2 --patch-size 32 --steps 2 --warmup 1 --pairs 4)
else
  DEV=cuda; TESTS=tests
  MAE=(--arch large --size 640x640 --batch-sizes 1,8,32,64 --min-time 1)
  ATT=(--arch large --size 640x640 --batch-sizes 32 --min-time 1)
  MET=(--sizes 640x480 --gpu-batch-sizes 1,4,16,64 --dtypes float32,float64 --metrics default --repeats 2)
  RUN=(--batch-sizes 1,16); RUNM=(--method maefuse --set random_init=true --set precision=bf16 --metrics EN,SD,SF,AG --batch-sizes 32)
  TRN=(--method maefuse --batch-size 32 --warp-size 640 --precision bf16 --steps 10 --warmup 2)
fi

# shellcheck disable=SC2086
step tests 110 $PY -m pytest -q -p no:cacheprovider -p gpu_select -rs $TESTS --junitxml="$OUT/tests.xml"
step maefuse_speed 160 $PY benchmarks/maefuse_speed.py "${MAE[@]}" --device $DEV --precisions fp32,tf32,bf16 \
  --attention auto --skip training --out "$OUT/maefuse_speed.json"
step maefuse_attention 50 $PY benchmarks/maefuse_speed.py "${ATT[@]}" --device $DEV --precisions bf16 \
  --attention auto,flash,efficient,math --skip official,training --out "$OUT/maefuse_attention.json"
step metrics_speed 60 $PY benchmarks/metrics_speed.py "${MET[@]}" --device $DEV --compile off --no-reference \
  --data "$FUSEBENCH_DATA" --out "$OUT/metrics_speed.json"
step run_speed_mean 50 $PY benchmarks/run_speed.py --device $DEV "${RUN[@]}" --out "$OUT/run_speed_mean.json"
step run_speed_maefuse 60 $PY benchmarks/run_speed.py --device $DEV "${RUNM[@]}" --out "$OUT/run_speed_maefuse.json"
if [ -f benchmarks/train_speed.py ]; then
  step train_speed 60 $PY benchmarks/train_speed.py "${TRN[@]}" --device $DEV --dataset "$FUSEBENCH_DATA/msrs/test" \
    --out "$OUT/train_speed.json"
fi
echo "gpu.sh: $((SECONDS - START))s in all; results in $OUT (steps.tsv: name, exit code, seconds)"
cat "$OUT/steps.tsv"
