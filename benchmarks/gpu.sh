#!/usr/bin/env bash
# GPU readiness check (issue 15, item 5): one script that, on a CUDA machine,
#   (a) prints the card (nvidia-smi), torch's version and its CUDA build;
#   (b) runs the MMD benchmarks with --device cuda: mmd_speed.py, perm_memory.py at the full
#       n = m = 10^5 target, and peers.py when any peer library is installed;
#   (c) trains the mnist-gmmn-ae preset in full on the GPU and evaluates it, timed;
#   (d) with two or more GPUs, checks that a 2-worker torchrun run equals one process.
# It prints absolute numbers (wall seconds per step) and exits nonzero if any step failed.
#
#   bash benchmarks/gpu.sh               # on the GPU machine
#   bash benchmarks/gpu.sh --dry-run     # tiny sizes on the CPU, every step (also GPU_SH_QUICK=1)
#
# Environment: PYTHON (default python), GPU_SH_OUT (run folder, default runs/gpu-sh-<time>),
# GMMN_DATA / --data-dir as for gmmn itself: (c) needs MNIST there already, because the GPU
# machine may have no network (gmmn data download mnist, or gmmn data import, beforehand).
# The dry run runs the torchrun check on two CPU workers (gloo), as tests/test_distributed.py
# does, so every command here is exercised without a GPU.
set -uo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
QUICK=${GPU_SH_QUICK:-0}
for arg in "$@"; do
    case "$arg" in
        --dry-run) QUICK=1 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "gpu.sh: unknown argument $arg (use --dry-run or nothing)" >&2; exit 2 ;;
    esac
done
OUT=${GPU_SH_OUT:-runs/gpu-sh-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

if [[ "$QUICK" == 1 ]]; then
    DEVICE=cpu
    echo "gpu.sh: DRY RUN on the CPU at tiny sizes (numbers are not GPU numbers)"
else
    DEVICE=cuda
fi

FAILED=()
SUMMARY=()
# step NAME COMMAND...: run it, print its wall time, remember failures and go on.
step() {
    local name=$1
    shift
    echo
    echo "== $name"
    echo "\$ $*"
    local start end
    start=$(date +%s.%N)
    "$@"
    local rc=$?
    end=$(date +%s.%N)
    local secs
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    if [[ $rc -eq 0 ]]; then
        echo "-- $name: ok, ${secs} s"
        SUMMARY+=("$(printf '%-44s ok      %8s s' "$name" "$secs")")
    else
        echo "-- $name: FAILED (exit $rc) after ${secs} s"
        SUMMARY+=("$(printf '%-44s FAILED  %8s s' "$name" "$secs")")
        FAILED+=("$name")
    fi
}

# (a) the machine ---------------------------------------------------------------------------
gpu_count=0
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
    gpu_count=$(nvidia-smi -L | wc -l)
elif [[ "$QUICK" != 1 ]]; then
    echo "gpu.sh: nvidia-smi not found: this is not a CUDA machine (try --dry-run)" >&2
    exit 1
fi
step "torch and CUDA" "$PY" -c "
import sys, torch
print('torch', torch.__version__, '| CUDA build', torch.version.cuda,
      '| cuda available', torch.cuda.is_available(), '| devices', torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    print('  cuda:%d' % i, torch.cuda.get_device_name(i))
sys.exit(0 if '$DEVICE' == 'cpu' or torch.cuda.is_available() else 1)
"

# (b) the MMD benchmarks --------------------------------------------------------------------
if [[ "$QUICK" == 1 ]]; then
    step "mmd_speed.py" "$PY" benchmarks/mmd_speed.py --quick --large-n 500 --device "$DEVICE"
    step "perm_memory.py" "$PY" benchmarks/perm_memory.py --n 400 --dense-n 200 \
        --permutations 20 --device "$DEVICE"
else
    step "mmd_speed.py" "$PY" benchmarks/mmd_speed.py --large-n 20000 --device "$DEVICE"
    step "perm_memory.py (n = m = 1e5, d = 10, 200 perms)" "$PY" benchmarks/perm_memory.py \
        --n 100000 --d 10 --permutations 200 --dense-n 4000 --device "$DEVICE"
fi
if "$PY" -c "
import importlib.util, sys
peers = ('geomloss', 'alibi_detect', 'torchdrift', 'hyppo', 'frouros', 'dcor')
sys.exit(0 if any(importlib.util.find_spec(p) for p in peers) else 1)"; then
    if [[ "$QUICK" == 1 ]]; then
        step "peers.py" "$PY" benchmarks/peers.py --quick --rounds 1 --device "$DEVICE" \
            --json "$OUT/peers.json"
    else
        step "peers.py" "$PY" benchmarks/peers.py --rounds 3 --device "$DEVICE" \
            --json "$OUT/peers.json"
    fi
else
    echo
    echo "== peers.py: skipped, no peer library installed (pip install -e '.[bench]')"
fi

# (c) one full training and its evaluation --------------------------------------------------
if [[ "$QUICK" == 1 ]]; then
    TRAIN=(--preset digits-gmmn-ae --iterations 20 --pretrain-iterations 10
           --finetune-iterations 10 --sample-every 0 --checkpoint-every 0)
    EVAL=(--metrics parzen,nn --n-samples 200)
else
    TRAIN=(--preset mnist-gmmn-ae)
    EVAL=()
    if ! "$PY" -m gmmn data info mnist >/dev/null 2>&1; then
        echo "gpu.sh: MNIST is not where gmmn looks (gmmn data info mnist); download or" \
             "import it first (docs/data.md)" >&2
        FAILED+=("MNIST missing")
    fi
fi
step "train ${TRAIN[1]} on $DEVICE" "$PY" -m gmmn train "${TRAIN[@]}" --device "$DEVICE" \
    --no-progress --out "$OUT/train"
step "evaluate ${TRAIN[1]} on $DEVICE" "$PY" -m gmmn evaluate --run "$OUT/train" \
    --device "$DEVICE" "${EVAL[@]}"
if [[ -f "$OUT/train/eval/report.md" ]]; then
    sed -n '1,40p' "$OUT/train/eval/report.md"
fi

# (d) 2-process torchrun equivalence --------------------------------------------------------
DIST=(--preset digits-gmmn --iterations 20 --sample-batch-size 32 --data-batch-size 32
      --hidden 16 --checkpoint-every 10 --log-every 5 --sample-every 0 --no-progress)
if [[ "$QUICK" == 1 || "$gpu_count" -ge 2 ]]; then
    # CUDA workers take cuda:LOCAL_RANK (--device cuda:N is refused under torchrun)
    step "one process" "$PY" -m gmmn train "${DIST[@]}" --device "$DEVICE" --out "$OUT/dist-one"
    step "torchrun, 2 workers" env OMP_NUM_THREADS=1 "$PY" -m torch.distributed.run \
        --standalone --nproc_per_node=2 -m gmmn train "${DIST[@]}" --device "$DEVICE" \
        --out "$OUT/dist-two"
    # CPU float rounding is reproducible; GPU kernels round differently between batch shapes
    TOL=$([[ "$DEVICE" == cpu ]] && echo 1e-5 || echo 1e-4)
    step "torchrun equals one process (tol $TOL)" "$PY" -c "
import json, sys, torch
one, two, tol = '$OUT/dist-one', '$OUT/dist-two', float('$TOL')
rows = [[json.loads(s) for s in open(f'{d}/metrics.jsonl')] for d in (one, two)]
gaps = [abs(a['loss'] - b['loss']) for a, b in zip(*rows, strict=True)]
wa, wb = (torch.load(f'{d}/checkpoint.pt', weights_only=True, map_location='cpu')['model']
          for d in (one, two))
wgap = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
print(f'{len(gaps)} logged steps: max loss gap {max(gaps):.2e}; max weight gap {wgap:.2e}')
sys.exit(0 if max(gaps) <= tol and wgap <= tol else 1)
"
else
    echo
    echo "== torchrun check: skipped, $gpu_count GPU(s) (needs 2)"
fi

echo
echo "== summary ($([[ "$QUICK" == 1 ]] && echo 'dry run, CPU' || echo "$DEVICE")), runs in $OUT"
printf '%s\n' "${SUMMARY[@]}"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "FAILED: ${FAILED[*]}"
    exit 1
fi
echo "all steps passed"
