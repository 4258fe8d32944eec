#!/usr/bin/env bash
# Kill test: proves that a training run killed with SIGKILL at any moment and continued with
# `dynamoe train --resume` ends bitwise identical to a run that was never interrupted, for the
# classifier, the language model and LoRA fine-tuning (configs in tests/kill/).
#
# Per trainer: one reference run to the end, then N trials of the same run under another name,
# killed (SIGKILL, no chance to clean up) and resumed until it finishes. Trial k is of kind:
#   k % 3 == 1  random:     killed at a moment uniform over the reference's duration
#   k % 3 == 2  checkpoint: killed inside the write of a random checkpoint, once its .tmp-step_*
#                           folder holds 0 to 3 files
#   k % 3 == 0  resume:     killed at a random moment, then the resume itself killed at a random moment
# Each trial checks that the final checkpoint's model.safetensors, optimizer.safetensors and
# state.json (RNG state) equal the reference's byte for byte, and that metrics.jsonl reads as
# one run (every row once, at the reference's steps, the same eval losses).
#
# usage: scripts/kill-test.sh [--dynamoe PATH] [--trainers classifier,lm,finetune] [--trials N]
#                             [--only K] [--seed S] [--workdir DIR]
# Exit status: 0 when every trial is bitwise identical, 1 on any mismatch or failed resume.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DYN=$ROOT/build/dynamoe TRAINERS=classifier,lm,finetune TRIALS=20 ONLY=0 SEED=$((10#$(date +%N) % 100000)) W=""
PY=/usr/bin/python3; [[ -x $PY ]] || PY=python3
while (($#)); do
  case $1 in
    --dynamoe) DYN=$(realpath "$2"); shift 2 ;;
    --trainers) TRAINERS=$2; shift 2 ;;
    --trials) TRIALS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;   # replay a single trial (with the same --seed)
    --seed) SEED=$2; shift 2 ;;
    --workdir) W=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "kill-test: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -x $DYN ]] || { echo "kill-test: no dynamoe binary at '$DYN' (--dynamoe PATH)" >&2; exit 2; }
KEEP_W=1; [[ -n $W ]] || { W=$(mktemp -d /tmp/kill-test.XXXXXX); KEEP_W=0; }
mkdir -p "$W" && W=$(realpath "$W")
export OMP_NUM_THREADS=1   # single-threaded (the configs also set train.threads = 1)
declare -A TIDX=([classifier]=1 [lm]=2 [finetune]=3)   # per-trainer part of each trial's RNG seed
exec {NAP}<> <(:)   # a pipe nobody writes: `read -t` on it sleeps without forking a process
PID=""; trap '[[ -n $PID ]] && kill -KILL "$PID" 2>/dev/null; exit 130' INT TERM

now_us() { echo $((10#${EPOCHREALTIME/./})); }
secs() { printf '%d.%03d' $(($1 / 1000000)) $(($1 % 1000000 / 1000)); }
# R = a number in [0, $1) from bash's RANDOM (seeded per trial); no subshell, which would not advance it.
rnd() { R=$(( ((RANDOM << 15) | RANDOM) % $1 )); }
# True while $PID runs (a finished child is a zombie until waited for, which `kill -0` still finds).
alive() { local a b s; read -r a b s _ <"/proc/$PID/stat" 2>/dev/null && [[ $s != Z ]]; }
launch() { local log=$1; shift; "$@" >>"$log" 2>&1 & PID=$!; T0=$(now_us); }
# Waits for $PID; KILLED=1 if our SIGKILL ended it, RC = its exit status otherwise.
reap() { { wait "$PID"; } 2>/dev/null; RC=$?; KILLED=$((RC == 137)); PID=""; }

# Synthetic data, written offline the way the C++ tests write theirs: a 28x28 IDX image set of
# 10 noisy prototypes (tests/test_util.h) and two byte-level token corpora of patterned sentences
# in the `dynamoe data fetch` layout (<dir>/<corpus>/byte/{train,val}.bin + meta.json).
make_data() {
  "$PY" - "$W/data" <<'EOF'
import json, os, random, struct, sys
out, r = sys.argv[1], random.Random(7)
def fnv1a64(b):
    h = 0xcbf29ce484222325
    for x in b: h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h
os.makedirs(out + "/idx", exist_ok=True)
protos = [[r.randrange(256) for _ in range(784)] for _ in range(10)]
for name, n in (("train", 3000), ("t10k", 500)):
    px = bytearray(min(255, max(0, int(v + r.gauss(0, 60)))) for i in range(n) for v in protos[i % 10])
    open(f"{out}/idx/{name}-images-idx3-ubyte", "wb").write(struct.pack(">IIII", 0x803, n, 28, 28) + px)
    open(f"{out}/idx/{name}-labels-idx1-ubyte", "wb").write(struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n)))
words = {"python-docs": [["the parser", "a module", "this function", "the loop", "an object"],
                         ["returns", "reads", "writes", "calls", "keeps"],
                         ["a list of names.", "the file.", "every value.", "its own state.", "a string."]],
         "kernel-docs": [["the driver", "each device", "an interrupt", "the scheduler"], ["locks", "maps", "wakes"],
                         ["the bus memory.", "all queued pages.", "its DMA buffer."]]}
for corpus, w in words.items():
    d = f"{out}/text/{corpus}/byte"; os.makedirs(d, exist_ok=True)
    meta = {"corpus": corpus, "tokenizer": "byte", "vocab_size": 257, "eot_id": 256, "splits": {}}
    for split, docs in (("train", 60), ("val", 6)):
        ids, text_bytes = [], 0
        for k in range(docs):
            t = f"Title {k}\n\n" + "".join(" ".join(r.choice(x) for x in w) + ("\n\n" if s % 6 == 5 else " ") for s in range(40))
            ids += list(t.encode()) + [256]; text_bytes += len(t)
        blob = struct.pack(f"<{len(ids)}H", *ids)
        open(f"{d}/{split}.bin", "wb").write(blob)
        meta["splits"][split] = {"file": f"{split}.bin", "documents": docs, "tokens": len(ids),
                                 "text_bytes": text_bytes, "checksum": fnv1a64(blob)}
    json.dump(meta, open(f"{d}/meta.json", "w"), indent=1)
EOF
}

# CMD = the command line of a fresh run $2 of trainer $1.
new_cmd() {
  CMD=("$DYN" train --config "$ROOT/tests/kill/$1.yaml" --plain --name "$2" --set "train.runs_dir=$W/runs/$1")
  case $1 in
    classifier) CMD+=(--set "data.path=$W/data/idx") ;;
    lm) CMD+=(--set "data.dir=$W/data/text") ;;
    finetune) CMD+=(--set "data.dir=$W/data/text" --set "finetune.base=$W/runs/base") ;;
  esac
}

# Kills $PID $1 microseconds after its start (unless it ends before), then reaps it.
kill_after() {
  local deadline=$((T0 + $1))
  while alive; do
    (($(now_us) >= deadline)) && { kill -KILL "$PID"; break; }
    read -t 0.002 -u "$NAP"
  done
  reap
}

# Kills $PID inside the write of checkpoint step $2 of run $1: the instant its temporary folder
# holds at least $3 entries (0: the folder has just appeared; 1, 2, 3: files written so far).
kill_at_checkpoint() {
  local f step entries; step=$(printf %08d "$2")
  while alive; do
    for f in "$1"/checkpoints/.tmp-step_"$step"-*; do
      [[ -e $f ]] || continue
      entries=("$f"/*); [[ -e ${entries[0]} ]] || entries=()
      ((${#entries[@]} >= $3)) && { kill -KILL "$PID"; break 2; }
    done
    read -t 0.0005 -u "$NAP"
  done
  reap
}

# LAND = where a kill left run $1: inside a checkpoint write (a .tmp-step_* folder remains,
# with the files written so far), or after its newest whole checkpoint.
landed() {
  local t latest=""
  for t in "$1"/checkpoints/.tmp-step_*; do
    [[ -e $t ]] || continue
    t=${t##*/.tmp-step_}; HITS=$((HITS + 1))
    LAND="during checkpoint write of step $((10#${t%%-*})) (tmp holds: $(ls -A "$1"/checkpoints/.tmp-step_"${t}" | sed 's/\.[0-9]*$//' | paste -sd, -))"
    LAND=${LAND/holds: )/is empty)}; return
  done
  for t in "$1"/checkpoints/step_*; do [[ -e $t ]] && latest=${t##*/step_}; done
  if [[ -n $latest ]]; then LAND="after checkpoint $((10#$latest))"; else LAND="before the first checkpoint"; fi
}

# Continues run $1 ($2: trainer, $3: name) in the foreground. A run killed before its first
# checkpoint cannot resume: dynamoe must refuse cleanly ("has no checkpoint yet; start it again
# instead", or "not a run folder"), and the run is started again with --overwrite.
resume() {
  "$DYN" train --resume "$1" --plain >>"$1.log" 2>&1; RC=$?
  FROM=$(grep -o 'resuming .* from step [0-9]*' "$1.log" | tail -1 | grep -o '[0-9]*$')
  FROM="resumed from step ${FROM:-?}"
  compgen -G "$1/checkpoints/step_*" >/dev/null && return
  FROM="--resume refused (exit $RC: $(tail -1 "$1.log" | cut -c1-60)...)"
  if ((RC != 1)) || ! tail -1 "$1.log" | grep -q "no checkpoint yet\|not a run folder"; then ((RC == 0)) && RC=99; return; fi
  new_cmd "$2" "$3"; "${CMD[@]}" --overwrite >>"$1.log" 2>&1; RC=$?; FROM="--resume refused: started again"
}

# DIFF = how run $2 differs from the reference run $1 ("" if not at all).
compare() {
  local f a=$1/checkpoints/$FINAL b=$2/checkpoints/$FINAL
  DIFF=""
  [[ -d $b ]] || { DIFF="no final checkpoint $FINAL"; return; }
  for f in model.safetensors optimizer.safetensors state.json; do
    cmp -s "$a/$f" "$b/$f" || DIFF+="$f differs: $("$PY" - "$a/$f" "$b/$f" <<<"$WHAT_DIFFERS"); "
  done
  DIFF+=$("$PY" - "$1/metrics.jsonl" "$2/metrics.jsonl" <<<"$METRICS_CHECK")
}
# Names the tensors (safetensors) or keys (state.json) of two files that differ.
WHAT_DIFFERS='
import json, struct, sys, array
def load(p):
    b = open(p, "rb").read()
    if p.endswith(".json"): return json.loads(b), None
    n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return h, b[8 + n:]
(ha, da), (hb, db) = load(sys.argv[1]), load(sys.argv[2])
if da is None:
    print("keys " + ", ".join(k for k in sorted(set(ha) | set(hb)) if ha.get(k) != hb.get(k))); sys.exit()
out = [f"{k} only in one file" for k in sorted(set(ha) ^ set(hb))]
for k in sorted(set(ha) & set(hb)):
    x, y = (d[h[k]["data_offsets"][0]:h[k]["data_offsets"][1]] for d, h in ((da, ha), (db, hb)))
    if x == y: continue
    if ha[k]["dtype"] == "F32" and len(x) == len(y):
        x, y = array.array("f", x), array.array("f", y)
        out.append(f"{k} ({sum(u != v for u, v in zip(x, y))}/{len(x)} values, max |diff| {max(abs(u - v) for u, v in zip(x, y)):.3g})")
    else: out.append(k)
print(f"{len(out)} of {len(ha)} tensors: " + ", ".join(out[:6]) + (" ..." if len(out) > 6 else ""))'
# metrics.jsonl must read as one run: the same (split, step) rows as the reference, each once,
# and the same evaluation losses (evaluations of identical weights).
METRICS_CHECK='
import collections, json, sys
a, b = ([json.loads(l) for l in open(p) if l.strip()] for p in sys.argv[1:3])
key = lambda r: (r["split"], r["step"])
out = [f"row {k} {n} times" for k, n in collections.Counter(map(key, b)).items() if n > 1]
if [key(r) for r in a] != [key(r) for r in b] and not out: out.append("rows at other steps than the reference")
ev = lambda rs: {key(r): r.get("loss") for r in rs if r["split"] != "train"}
out += [f"{k} loss {ev(b)[k]} != {v}" for k, v in ev(a).items() if k in ev(b) and ev(b)[k] != v]
print("metrics.jsonl: " + "; ".join(out) + "; " if out else "", end="")'

# One trial of trainer $1 number $2: prints its line, returns 1 if it failed.
trial() {
  local t=$1 k=$2 name=t$2 kind what line run
  run=$W/runs/$t/t$2
  RANDOM=$((SEED * 1000 + TIDX[$t] * 100 + k))   # trial k replays alone with --seed S --only k
  kind=$(((k % 3 == 2) ? 1 : (k % 3 == 0) ? 2 : 0))
  new_cmd "$t" "$name"; launch "$run.log" "${CMD[@]}"
  if ((kind == 1)); then
    rnd $((STEPS / EVERY)); local ck=$(( (R + 1) * EVERY )); rnd 4
    what="in the write of checkpoint $ck, after $R files"
    kill_at_checkpoint "$run" "$ck" "$R"
  else
    rnd 10000; what="at $(secs $((REF_US * R / 10000))) s (f=0.$(printf %04d $R))"
    kill_after $((REF_US * R / 10000))
  fi
  line="$what: "
  if ((KILLED)); then landed "$run"; line+="landed $LAND"; else line+="the run ended first (exit $RC)"; fi
  if ((kind == 2 && KILLED)); then
    # Resume in the background and kill that too, uniformly over about the time left, then resume again.
    local before=$R; rnd 10000
    local at=$(( (REF_US * (10000 - before) / 10000 + REF_US / 10) * R / 10000 ))
    if compgen -G "$run/checkpoints/step_*" >/dev/null; then launch "$run.log" "$DYN" train --resume "$run" --plain
    else new_cmd "$t" "$name"; launch "$run.log" "${CMD[@]}" --overwrite; fi
    kill_after "$at"
    if ((KILLED)); then landed "$run"; RESUME_KILLS=$((RESUME_KILLS + 1)); line+="; resume killed at $(secs "$at") s: landed $LAND"
    else line+="; the resume ended before its kill at $(secs "$at") s (exit $RC)"; fi
  fi
  if ((KILLED)); then resume "$run" "$t" "$name"; line+="; $FROM"; fi
  if ((RC != 0)); then
    line+=" -> FAILED: exit $RC: $(grep -v '^step ' "$run.log" | tail -1)"
  else
    compare "$W/runs/$t/ref" "$run"
    if [[ -z $DIFF ]]; then line+=" -> bitwise identical"; else line+=" -> NOT IDENTICAL: ${DIFF%; }"; fi
  fi
  printf '%-10s trial %2d/%d  %s\n' "$t" "$k" "$TRIALS" "$line"
  [[ $line == *" -> bitwise identical" ]] || { echo "           replay: $0 --dynamoe $DYN --seed $SEED --trainers $t --trials $TRIALS --only $k; kept: $run" ; return 1; }
  rm -rf "$run" "$run.log"
}

START=$(now_us) FAILED=0
echo "kill-test: seed $SEED, dynamoe $DYN, work dir $W"
make_data || { echo "kill-test: could not write the synthetic data" >&2; exit 1; }
IFS=, read -ra LIST <<<"$TRAINERS"
for t in "${LIST[@]}"; do
  [[ -n ${TIDX[$t]:-} ]] || { echo "kill-test: unknown trainer '$t' (classifier, lm, finetune)" >&2; exit 2; }
  mkdir -p "$W/runs/$t"
  if [[ $t == finetune && ! -d $W/runs/base ]]; then   # the frozen dense base LM the adapters go on
    "$DYN" train --config "$ROOT/tests/kill/lm.yaml" --plain --name base --set "train.runs_dir=$W/runs" \
      --set "data.dir=$W/data/text" --set lm.moe_every=0 --set train.steps=150 --set train.checkpoint_every=150 \
      >"$W/runs/base.log" 2>&1 || { echo "kill-test: base LM failed, see $W/runs/base.log"; exit 1; }
  fi
  rm -rf "$W/runs/$t/ref"; new_cmd "$t" ref
  T=$(now_us); "${CMD[@]}" >"$W/runs/$t/ref.log" 2>&1 || { echo "kill-test: $t reference run failed, see $W/runs/$t/ref.log"; FAILED=1; continue; }
  REF_US=$(($(now_us) - T))
  STEPS=$(sed -n 's/^ *steps: *//p' "$W/runs/$t/ref/config.yaml" | head -1)
  EVERY=$(sed -n 's/^ *checkpoint_every: *//p' "$W/runs/$t/ref/config.yaml" | head -1)
  FINAL=step_$(printf %08d "$STEPS")
  echo "$t: reference run $(secs $REF_US) s, $STEPS steps, checkpoint every $EVERY"
  OK=0 N=0 HITS=0 RESUME_KILLS=0
  for ((k = 1; k <= TRIALS; k++)); do
    ((ONLY == 0 || ONLY == k)) || continue
    N=$((N + 1)); if trial "$t" "$k"; then OK=$((OK + 1)); else FAILED=1; fi
  done
  echo "$t: $OK/$N bitwise identical ($HITS kills landed during a checkpoint write, $RESUME_KILLS resumes killed)"
done
echo "kill-test: total wall time $(secs $(($(now_us) - START))) s, seed $SEED"
if ((FAILED)); then echo "kill-test: FAILED; work dir kept: $W"; exit 1; fi
((KEEP_W)) || rm -rf "$W"
