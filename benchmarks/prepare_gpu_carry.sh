#!/usr/bin/env bash
# Copy what benchmarks/gpu.sh reads from ../shared into .devcarry/ (git-ignored), so a GPU machine that has
# only the working tree (and the paths carried with it) can run the whole GPU set:
#
#   benchmarks/prepare_gpu_carry.sh                  # here, where ../shared/datasets exists
#   then carry `.devcarry` with the working tree and run:  benchmarks/gpu.sh OUT_DIR
#
# Copies the MSRS test pairs (ir/ and vi/, ~15 MB) to .devcarry/datasets/msrs/test; gpu.sh sets
# FUSEBENCH_DATA=.devcarry/datasets. SRC (default ../shared/datasets, or $FUSEBENCH_DATA) is where they are.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${1:-${FUSEBENCH_DATA:-$ROOT/../shared/datasets}}
DEST=$ROOT/.devcarry/datasets
if [ ! -d "$SRC/msrs/test/ir" ] || [ ! -d "$SRC/msrs/test/vi" ]; then
  echo "prepare_gpu_carry: $SRC/msrs/test/{ir,vi} not found; pass the datasets root as the first argument" >&2
  exit 1
fi
mkdir -p "$DEST/msrs/test"
for sub in ir vi; do
  rm -rf "$DEST/msrs/test/$sub"
  cp -r "$SRC/msrs/test/$sub" "$DEST/msrs/test/$sub"
done
[ -f "$SRC/msrs/SOURCE.md" ] && cp "$SRC/msrs/SOURCE.md" "$DEST/msrs/"
echo "prepare_gpu_carry: $(ls "$DEST/msrs/test/ir" | wc -l) MSRS test pairs in $DEST ($(du -sh "$DEST" | cut -f1))"
