#!/usr/bin/env bash
# The CUDA path of xlr on a machine with a GPU (first run on a lent H100 in session 10; README):
#   (a) the project env (`make env` unless XLR_PYTHON names an interpreter)
#   (b) the real-architecture rehearsal (tests/test_rehearsal.py) on CUDA in bf16, if present
#   (c) faiss search on the GPU against the CPU, if faiss sees a GPU
#   (d) fp16 training steps with loss scaling (bf16 off CUDA), the suite's fp16 tests of
#       training, an all-reduce over NCCL, then `xlr train` of one smoke arm under torchrun on CUDA
#   (e) the ranking and input-pipeline benchmarks on CUDA
#   (f) training samples/s against open_clip's own trainer at the study's architecture in bf16
# Usage: bash benchmarks/gpu_check.sh [--cpu]
#   --cpu (or XLR_GPU_CHECK_DRY=1): a dry run on the CPU, every step at tiny sizes, the GPU-only
#   parts skipped with a message (tests/test_launch.py runs it so its commands are known to work).
# Settings: XLR_GPU_CHECK_STEPS (bcdef: which of b-f run), XLR_PYTHON (an interpreter instead of
#   `make env`), XLR_WHEELS (folders of wheels, each installed into a folder of its own under
#   XLR_SITE, .site/ by default, put first on PYTHONPATH: a lent machine reaches no package index;
#   device_kit.sh writes them),
#   XLR_GPU_CHECK_REHEARSAL_S (450, under a lent machine's 600 s a command: then step b is
#   stopped with pytest's stacks printed and counted as failed, and the script goes on),
#   XLR_GPU_CHECK_PARAMS (params/smoke.yaml), XLR_GPU_CHECK_ARM (hybrid-a0.5-full),
#   XLR_BENCH_PIPELINE_ARGS and XLR_BENCH_TRAIN_ARGS (bench_pipeline.py's and bench_train.py's
#   arguments after --device, in place of the defaults; bench_train's on a GPU: the study's
#   model, bf16, batch 256, steps 33-96: the skipped ones cover 8 workers' prefetched
#   batches). The log goes to
#   $OUT/gpu_check.log (runs/gpu_check/ without OUT); runs and caches to a scratch XLR_ROOT.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=${XLR_GPU_CHECK_DRY:-0}
if [[ "${1:-}" == "--cpu" ]]; then DRY=1; fi
STEPS=${XLR_GPU_CHECK_STEPS:-bcdef}
if [[ ! "$STEPS" =~ ^[bcdef-]*$ ]]; then
    echo "XLR_GPU_CHECK_STEPS is '$STEPS': letters b to f, or - for none" >&2
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
# A failed check or benchmark of b, c, e or f is named and the script goes on to the next step,
# so one failure does not cost a lent machine's call the steps after it (a failure in d stops
# it: each of d's commands needs the one before); the script then exits 1 at the end.
FAILED=()
try() { "$@" || { local rc=$?; echo "FAILED (exit $rc): $*"; FAILED+=("$* (exit $rc)"); }; }

if [[ "$DRY" == 1 ]]; then
    export CUDA_VISIBLE_DEVICES=""  # params with device 'auto' train on the CPU too
    DEVICE=cpu CARD="CPU (dry run)" RANKS=2 BACKEND=gloo
    RANKING=(--gallery 3000 --queries 16 --repeats 1 --threads 1) TRAINING=()
else
    nvidia-smi --query-gpu=name,memory.total --format=csv
    DEVICE=cuda CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
    RANKS=gpus BACKEND=nccl  # as many as torch sees: step (d) counts them once the env is there
    RANKING=(--queries 259200 --threads 8 --repeats 1)  # the whole pool, as a model's eval
    TRAINING=(--study-model --precision bf16 --batch 256 --steps 96 --skip 32 --workers 8)
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
    # live progress (-s), no plugins but pytest's own (a lent image has many), and, if it
    # outlasts XLR_GPU_CHECK_REHEARSAL_S, SIGABRT to pytest and what it started in its process
    # group (not the notebooks' kernels, which run in sessions of their own): pytest's
    # faulthandler prints its threads' stacks. On the first lent H100 its 7 tests passed but
    # pytest did not exit within the call's limit. No core files; killed 30 s later if need be.
    ulimit -S -c 0
    try env XLR_REHEARSAL_DEVICE=cuda XLR_REHEARSAL_PRECISION=bf16 \
        PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 \
        timeout --kill-after=30 --signal=ABRT "${XLR_GPU_CHECK_REHEARSAL_S:-450}" \
        "$PY" -m pytest tests/test_rehearsal.py -q -s -p no:cacheprovider --durations=0
fi

step "(c) faiss search on the GPU"
if ! want c; then
    echo "skipped: not in XLR_GPU_CHECK_STEPS ($STEPS)"
else
try "$PY" - <<'EOF'
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

NPROC=?
if want d; then
    # RANKS, or the GPUs torch sees (nvidia-smi -L also lists MIG devices and those
    # CUDA_VISIBLE_DEVICES hides), cut to the largest count that splits the arm's batch
    NPROC=$("$PY" - "$PARAMS" "$RANKS" <<'EOF'
import sys

import torch

from xlr.config import load_params

batch = load_params(sys.argv[1]).train.batch_size
wanted = torch.cuda.device_count() if sys.argv[2] == "gpus" else int(sys.argv[2])
print(max(n for n in range(1, max(wanted, 1) + 1) if batch % n == 0))
EOF
)
fi
step "(d) fp16 loss scaling, $BACKEND all-reduce and \`xlr train\` under torchrun," \
    "$NPROC rank(s) on $DEVICE (one rank makes no process group: xlr's own collectives," \
    "the gathered negatives, gradient all-reduce and barriers, need two or more)"
if ! want d; then
    echo "skipped: not in XLR_GPU_CHECK_STEPS ($STEPS)"
else
"$PY" - <<'EOF'
import math

import torch
from torch import nn

from xlr.runtime import DistContext
from xlr.train.loop import Trainer
from xlr.train.optim import make_optimizer, warmup_cosine

# train.precision fp16 (GPUs without bf16): autocast to float16 and a GradScaler in Trainer.step,
# on a small regression whose loss must fall; off CUDA, where it is refused, in bf16 instead
cuda = torch.cuda.is_available()
device = torch.device("cuda" if cuda else "cpu")
torch.manual_seed(0)
model = nn.Module()
model.net = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64))
model.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
model.to(device)
x = torch.randn(512, 64, device=device)
y = torch.sin(x)
seen = set()

def objective(model, batch, device, loaded):
    out = model.net(x)
    seen.add(out.dtype)
    loss = nn.functional.mse_loss(out.float(), y)
    return loss, {"loss": loss.detach()}

optimizer = make_optimizer(model, 3e-3, 0.0)
schedule, ctx = warmup_cosine(optimizer, 0, 200), DistContext(0, 1, device)
if not cuda:
    try:
        Trainer(model, objective, optimizer, schedule, ctx, "fp16", 1.0)
        raise AssertionError("fp16 training was not refused off CUDA")
    except ValueError as refused:
        print("off CUDA:", refused)
precision = "fp16" if cuda else "bf16"
trainer = Trainer(model, objective, optimizer, schedule, ctx, precision, 1.0)
losses = [trainer.step(None, ())["loss"] for _ in range(200)]
scale = trainer.scaler.get_scale() if trainer.scaler is not None else None
shown = f"loss {losses[0]:.4f} -> {losses[-1]:.4f}, outputs {seen}, scale {scale}"
print(f"{precision} on {device}: {shown}")
assert seen == {torch.float16 if cuda else torch.bfloat16}, seen
assert (trainer.scaler is not None) == cuda
assert scale is None or scale == 2.0**16  # the initial scale, unchanged: no step overflowed
assert losses[-1] < 0.5 * losses[0] and all(map(math.isfinite, losses)), losses[::20]
assert all(torch.isfinite(p).all() for p in model.parameters())
EOF
# the suite's fp16 tests of training: the scaler's state in its checkpoint, an overflowing step
# skipped, the adapters' one scale; on CUDA here (on the CPU, the CUDA guard lifted, in the dry run)
PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$PY" -m pytest tests/test_inputs.py -q -rs -p no:cacheprovider \
    -k "test_fp16_trains_with_a_grad_scaler or fp16_step_is_skipped or one_loss_scale_under_fp16"
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
"$PY" -m xlr.cli tune "$PARAMS" --base --quiet  # data, base, and the arm's learning rates
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

step "(e) ranking and input-pipeline benchmarks on $CARD"
if ! want e; then
    echo "skipped: not in XLR_GPU_CHECK_STEPS ($STEPS)"
else
try "$PY" benchmarks/bench_ranking.py --device "$DEVICE" "${RANKING[@]}"
if [[ "$DRY" == 1 && -z "${XLR_BENCH_PIPELINE_ARGS:-}" ]]; then
    echo "skipped in a dry run: set XLR_BENCH_PIPELINE_ARGS to tiny sizes to run it"
else
    # shellcheck disable=SC2086  # the extra arguments are words
    try "$PY" benchmarks/bench_pipeline.py --device "$DEVICE" ${XLR_BENCH_PIPELINE_ARGS:-}
fi
fi

step "(f) training samples/s against open_clip_train on $CARD"
if ! want f; then
    echo "skipped: not in XLR_GPU_CHECK_STEPS ($STEPS)"
else
if [[ -n "${XLR_BENCH_TRAIN_ARGS:-}" ]]; then read -ra TRAINING <<< "$XLR_BENCH_TRAIN_ARGS"; fi
if [[ ${#TRAINING[@]} == 0 ]]; then
    echo "skipped in a dry run: set XLR_BENCH_TRAIN_ARGS to tiny sizes to run it"
else
    try "$PY" benchmarks/bench_train.py --device "$DEVICE" "${TRAINING[@]}"
fi
fi

if (( ${#FAILED[@]} )); then
    step "${#FAILED[@]} failed on $CARD in ${SECONDS}s; log: $LOG_DIR/gpu_check.log"
    printf '  %s\n' "${FAILED[@]}"
    exit 1
fi
step "done on $CARD in ${SECONDS}s; log: $LOG_DIR/gpu_check.log"
