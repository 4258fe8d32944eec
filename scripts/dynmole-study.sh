#!/usr/bin/env bash
# The DynMoLE study of issue 7 in one command: fetch the three corpora, pretrain the dense base
# (configs/finetune/base.yaml) unless runs/dynmole-base has finished, fine-tune LoRA, MoLA,
# MixLoRA and DynMoLE adapters on it (configs/studies/dynmole.yaml, 12 runs, resumable) and
# write docs/results/dynmole.md. Usage: scripts/dynmole-study.sh [--jobs N] (default 2); it
# builds first (make build) unless SKIP_BUILD is set.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=2
if [[ "${1:-}" == "--jobs" ]]; then JOBS="$2"; fi
DYNAMOE=${DYNAMOE:-build/dynamoe}
[[ -n "${SKIP_BUILD:-}" ]] || make build
for corpus in python-docs kernel-docs jargon; do
  "$DYNAMOE" data fetch "$corpus" --tokenizer byte
done
if [[ ! -f runs/dynmole-base/summary.json ]]; then
  if [[ -d runs/dynmole-base/checkpoints ]]; then
    "$DYNAMOE" train --plain --resume runs/dynmole-base
  else
    "$DYNAMOE" train --plain --config configs/finetune/base.yaml --name dynmole-base --overwrite
  fi
fi
"$DYNAMOE" sweep configs/studies/dynmole.yaml --jobs "$JOBS"
"$DYNAMOE" results configs/studies/dynmole.yaml
