#!/usr/bin/env bash
# The CUDA path of xlr on a machine with a GPU (never run on one yet: no GPU has been lent):
#   (a) the project env (`make env` unless XLR_PYTHON names an interpreter)
#   (b) the real-architecture rehearsal (tests/test_rehearsal.py) on CUDA in bf16, if present
#   (c) faiss search on the GPU against the CPU, if faiss sees a GPU
#   (d) an all-reduce over NCCL, then `xlr train` of one smoke arm under torchrun on CUDA
#   (e) the ranking and input-pipeline benchmarks on CUDA, and training samples/s against
#       open_clip's own trainer at the study's architecture in bf16
# Usage: bash benchmarks/gpu_check.sh [--cpu]
#   --cpu (or XLR_GPU_CHECK_DRY=1): a dry run on the CPU, every step at tiny sizes, the GPU-only
#   parts skipped with a message (tests/test_launch.py runs it so its commands are known to work).
# Settings: XLR_GPU_CHECK_STEPS (bcde: which of b-e run), XLR_PYTHON (an interpreter instead of
#   `make env`), XLR_WHEELS (folders of wheels, each installed into a folder of its own under
#   XLR_SITE, .site/ by default, put first on PYTHONPATH: a lent machine reaches no package index;
#   device_kit.sh writes them),
#   XLR_GPU_CHECK_PARAMS (params/smoke.yaml), XLR_GPU_CHECK_ARM (hybrid-a0.5-full),
#   XLR_BENCH_PIPELINE_ARGS and XLR_BENCH_TRAIN_ARGS (bench_pipeline.py's and bench_train.py's
#   arguments after --device, in place of the defaults; bench_train's on a GPU: the study's
#   model, bf16, batch 256, steps 33-128: the skipped ones cover 8 workers' prefetched
#   batches). The log goes to
#   $OUT/gpu_check.log (runs/gpu_check/ without OUT); runs and caches to a scratch XLR_ROOT.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=${XLR_GPU_CHECK_DRY:-0}
if [[ "${1:-}" == "--cpu" ]]; then DRY=1; fi
STEPS=${XLR_GPU_CHECK_STEPS:-bcde}
if [[ ! "$STEPS" =~ ^[bcde-]*$ ]]; then
    echo "XLR_GPU_CHECK_STEPS is '$STEPS': letters b to e, or - for none" >&2
    exit 2
fi
PARAMS=${XLR_GPU_CHECK_PARAMS:-params/smoke.yaml}
ARM=${XLR_GPU_CHECK_ARM:-hybrid-a0.5-full}
LOG_DIR=${OUT:-runs/gpu_check}
mkdir -p "$LOG_DIR"
exec > >(tee "$LOG_DIR/gpu_check.log") 2>&1
XLR_ROOT=$(mktemp -d -t xlr-gpu-check-XXXXXX)
export XLR_ROOT HF_HUB_OFFLINE=1

step() { echo; echo "== $* [$(date -u +%T), ${SECONDS}s]"; }

if [[ "$DRY" == 1 ]]; then
    export CUDA_VISIBLE_DEVICES=""  # params with device 'auto' train on the CPU too
    DEVICE=cpu CARD="CPU (dry run)" NPROC=2 BACKEND=gloo
    RANKING=(--gallery 3000 --queries 16 --repeats 1 --threads 1) TRAINING=()
else
    nvidia-smi --query-gpu=name,memory.total --format=csv
    DEVICE=cuda CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
    NPROC=$(nvidia-smi -L | wc -l) BACKEND=nccl
    RANKING=(--queries 4096 --threads 8)
    TRAINING=(--study-model --precision bf16 --batch 256 --steps 128 --skip 32 --workers 8)
fi
echo "card: $CARD | params: $PARAMS | arm: $ARM | scratch XLR_ROOT: $XLR_ROOT"

want() { [[ "$STEPS" == *"$1"* ]]; }

step "(a) project env"
if [[ -n "${XLR_PYTHON:-}" ]]; then PY=$XLR_PYTHON; else make env; PY=.venv/bin/python; fi
# A lent machine has no package index (device_kit.sh): each folder of wheels goes into a folder
# of its own under SITE (pip --target --upgrade would replace the bin/ and share/ of another),
# which stays for a later call; every such folder then goes first on the paths.
SITE=$(realpath -m "${XLR_SITE:-.site}")
read -ra WHEELS <<< "${XLR_WHEELS:-}"
for wheels in "${WHEELS[@]}"; do
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --upgrade \
        --target "$SITE/$(basename "$wheels")" "$wheels"/*.whl
done
SITES=("$SITE"/*/)
if [[ -d "${SITES[0]}" ]]; then  # modules, console scripts, Jupyter's data (kernel, templates)
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # xlr itself, not installed there
    for site in "${SITES[@]%/}"; do
        export PYTHONPATH="$site:$PYTHONPATH" PATH="$site/bin:$PATH"
        export JUPYTER_PATH="$site/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
    done
    echo "carried wheels first on PYTHONPATH: $PYTHONPATH"
fi
"$PY" -c "import torch, xlr; print('torch', torch.__version__, '| cuda', torch.cuda.is_available())"

step "(b) real-architecture rehearsal on $DEVICE in bf16"
if ! want b; then
    echo "skipped: not in XLR_GPU_CHECK_STEPS ($STEPS)"
elif [[ ! -f params/rehearsal.yaml || ! -f tests/test_rehearsal.py ]]; then
    echo "skipped: params/rehearsal.yaml (the rehearsal) is not in this checkout"
elif ! grep -q XLR_REHEARSAL_DEVICE tests/test_rehearsal.py; then
    echo "skipped: tests/test_rehearsal.py reads no XLR_REHEARSAL_DEVICE, so it cannot run on CUDA"
elif [[ "$DRY" == 1 ]]; then
    echo "skipped in a dry run: the rehearsal's CPU run is tests/test_rehearsal.py's"
else
    XLR_REHEARSAL_DEVICE=cuda XLR_REHEARSAL_PRECISION=bf16 \
        "$PY" -m pytest tests/test_rehearsal.py -q -p no:cacheprovider
fi

step "(c) faiss search on the GPU"
if ! want c; then
    echo "skipped: not in XLR_GPU_CHECK_STEPS ($STEPS)"
else
"$PY" - <<'EOF'
import numpy as np

from xlr.eval.search import gpu_available, search

if not gpu_available():
    print("skipped: faiss sees no GPU (faiss-gpu is not installed: pip install -e '.[gpu]')")
    raise SystemExit(0)
rng = np.random.default_rng(0)
gallery = rng.standard_normal((200_000, 512), dtype=np.float32)
gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
queries = gallery[:2000] + 0.1 * rng.standard_normal((2000, 512), dtype=np.float32)
queries /= np.linalg.norm(queries, axis=1, keepdims=True)
gpu, cpu = search(queries, gallery, 10, use_gpu=True), search(queries, gallery, 10, use_gpu=False)
same = (gpu.indices == cpu.indices).mean()
print(f"faiss GPU top-10 equals the CPU's on {same:.4%} of 2000 x 10 (float rounding aside)")
assert same > 0.999, same
EOF
fi

step "(d) $BACKEND all-reduce and \`xlr train\` under torchrun, $NPROC rank(s) on $DEVICE"
if ! want d; then
    echo "skipped: not in XLR_GPU_CHECK_STEPS ($STEPS)"
else
cat > "$XLR_ROOT/all_reduce.py" <<'EOF'
import os

import torch
import torch.distributed as dist

cuda = torch.cuda.is_available()
dist.init_process_group("nccl" if cuda else "gloo")
device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
x = torch.full((1,), dist.get_rank() + 1.0, device=device)
dist.all_reduce(x)
n = dist.get_world_size()
assert x.item() == n * (n + 1) / 2, x
print(f"rank {dist.get_rank()} of {n}: {dist.get_backend()} all_reduce on {device} ok")
dist.destroy_process_group()
EOF
"$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" "$XLR_ROOT/all_reduce.py"
"$PY" -m xlr.cli tune "$PARAMS" --quiet  # data, base, and the rates the arm trains with
"$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" \
    -m xlr.cli train "$PARAMS" --arm "$ARM" --base --quiet | tee "$XLR_ROOT/trained.txt"
"$PY" - "$(tail -n 1 "$XLR_ROOT/trained.txt")/summary.json" "$DEVICE" <<'EOF'
import json
import sys

summary = json.load(open(sys.argv[1]))
print({k: summary[k] for k in ("name", "device", "world_size", "steps", "steps_per_s")})
assert summary["device"].startswith(sys.argv[2]), summary["device"]
EOF
fi

step "(e) benchmarks on $CARD"
if ! want e; then
    echo "skipped: not in XLR_GPU_CHECK_STEPS ($STEPS)"
else
"$PY" benchmarks/bench_ranking.py --device "$DEVICE" "${RANKING[@]}"
if [[ "$DRY" == 1 && -z "${XLR_BENCH_PIPELINE_ARGS:-}" ]]; then
    echo "skipped in a dry run: set XLR_BENCH_PIPELINE_ARGS to tiny sizes to run it"
else
    # shellcheck disable=SC2086  # the extra arguments are words
    "$PY" benchmarks/bench_pipeline.py --device "$DEVICE" ${XLR_BENCH_PIPELINE_ARGS:-}
fi
if [[ -n "${XLR_BENCH_TRAIN_ARGS:-}" ]]; then read -ra TRAINING <<< "$XLR_BENCH_TRAIN_ARGS"; fi
if [[ ${#TRAINING[@]} == 0 ]]; then
    echo "skipped in a dry run: set XLR_BENCH_TRAIN_ARGS to tiny sizes to run it"
else
    "$PY" benchmarks/bench_train.py --device "$DEVICE" "${TRAINING[@]}"
fi
fi

step "done on $CARD in ${SECONDS}s; log: $LOG_DIR/gpu_check.log"
