#!/usr/bin/env bash
# The GPU check of issue 21, as one script for one call on a lent device machine (H200 class).
#
#   device tool:  bash bench/gpu_check.sh            (carry out/demo/shards and out/demo/vocab)
#   CPU smoke:    DEVICE=cpu QUICK=1 OUT=/tmp/gpu-smoke bash bench/gpu_check.sh
#
# Needs only what the device image has (torch, numpy, sentencepiece, transformers): it runs the
# project's modules with `python3 -m`, builds nothing, downloads nothing. Inputs: the demo's token
# shards and vocabulary (`make demo` writes them; small). Everything goes under $OUT; a short table
# is printed last. Steps:
#   0. the machine: nvidia-smi, torch/CUDA versions
#   1. the data path alone (bench.bench_data): tokens/s against base's consumption at 45 % MFU
#   2. bench.bench_pretrain: base (ours eager, ours compiled, HF sdpa) and large (ours eager and
#      compiled), bf16 autocast, tokens/s, MFU, peak memory, a profiler table of base's step
#   3. a real `cc100 pretrain` of the small config on the demo shards: an unbroken run, the same
#      run stopped after its mid checkpoint and resumed; losses compared step by step
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-check}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-0}
SHARDS=${SHARDS:-out/demo/shards}
VOCAB=${VOCAB:-out/demo/vocab}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
status=0
step() { echo; echo "== $1 ($(date -u +%H:%M:%S))"; }
run() { "$@" || { echo "FAILED ($?): $*"; status=1; }; }

if [ "$QUICK" = 1 ]; then  # the script's own test on a CPU: tiny sizes, same code paths
    BENCH_MODELS=tiny; BENCH_LARGE=""; BENCH_ARGS="--repeats 1 --steps 1 --warmup 0"
    RUN_CONFIG=tiny; RUN_STEPS=20; DATA_ARGS="--batches 2 --repeats 1 --batch 16"
else
    BENCH_MODELS=base; BENCH_LARGE=large; BENCH_ARGS="--repeats 3 --steps 10 --warmup 3"
    RUN_CONFIG=small; RUN_STEPS=${RUN_STEPS:-400}; DATA_ARGS="--batches 20 --repeats 3 --batch 256"
fi

step "0. machine"
{ nvidia-smi 2>&1 || echo "no nvidia-smi"; $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"; } | tee "$OUT/machine.txt"

step "1. data path alone"
run $PY -m bench.bench_data --shards "$SHARDS" --config base $DATA_ARGS --json "$OUT/data.json" | tee "$OUT/data.txt"

step "2. training step: ours (eager, compiled) vs Hugging Face, bf16 autocast"
run $PY -m bench.bench_pretrain --configs "$BENCH_MODELS" --device "$DEVICE" --compile --profile $BENCH_ARGS \
    --json "$OUT/pretrain_base.json" 2>&1 | tee "$OUT/pretrain_base.txt"
if [ -n "$BENCH_LARGE" ]; then
    run $PY -m bench.bench_pretrain --configs "$BENCH_LARGE" --device "$DEVICE" --compile --no-hf $BENCH_ARGS \
        --json "$OUT/pretrain_large.json" 2>&1 | tee "$OUT/pretrain_large.txt"
fi

step "3. cc100 pretrain --config $RUN_CONFIG: unbroken vs stopped and resumed"
HALF=$((RUN_STEPS / 2))
COMMON=(--shards "$SHARDS" --vocab "$VOCAB" --config "$RUN_CONFIG" --steps "$RUN_STEPS" --device "$DEVICE"
        --checkpoint-every "$HALF" --eval-every "$HALF" --log-every 1)
rm -rf "$OUT/run-unbroken" "$OUT/run-resumed"
run $PY -m train.pretrain "${COMMON[@]}" --output "$OUT/run-unbroken" > "$OUT/run-unbroken.txt" 2>&1
run $PY -m train.pretrain "${COMMON[@]}" --output "$OUT/run-resumed" --stop-at-step "$((HALF + 3))" > "$OUT/run-resumed.txt" 2>&1
run $PY -m train.pretrain "${COMMON[@]}" --output "$OUT/run-resumed" --resume >> "$OUT/run-resumed.txt" 2>&1
tail -3 "$OUT/run-unbroken.txt"
run $PY -m bench.compare_runs "$OUT/run-unbroken" "$OUT/run-resumed" --from-step "$((HALF + 1))" \
    --json "$OUT/resume.json" | tee "$OUT/resume.txt"

step "summary"
for f in "$OUT"/pretrain_*.txt; do sed -n '/^config /,$p' "$f" | grep -v "^all measurements"; done
grep -E "^data path|^-> " "$OUT/data.txt"
sed -n '/steps compared/p;/loss:/p' "$OUT/resume.txt" 2>/dev/null
exit $status
