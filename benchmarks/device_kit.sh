#!/usr/bin/env bash
# The wheels a lent GPU machine lacks for benchmarks/gpu_check.sh, downloaded here into .whl/.
#
# A lent machine (the `device` tool) reaches no package index; its image has Python 3.12 with
# CUDA torch, transformers, peft, pandas, pyarrow, statsmodels, seaborn, pytest and more, but
# not open_clip, webdataset, faiss, duckdb or pydantic, nor the notebook stack the rehearsal
# runs. This resolves xlr's needs for CPython 3.12 on manylinux x86-64 with pip, drops every
# package the image already has (IMAGE below, as the device tool's KINDS.md lists it), and
# leaves two sets, each small enough to travel with the working tree in one call (64 MiB):
#   .whl/core       what `xlr train`, the ranking and the benchmarks import (steps a, c-f)
#   .whl/rehearsal  papermill, nbconvert, ipykernel and img2dataset's needs (step b)
# (47 MB and 48 MB when written). gpu_check.sh installs the folders XLR_WHEELS names into .site/
# first, which stays on the machine while it is held, so the sets can travel in two calls.
# faiss-gpu cannot travel: 1.15.1 is a 130 MB wheel that needs CUDA 12's runtime, cuBLAS (a
# 555 MB wheel) and cuRAND, where the image has CUDA 13's; step (c) skips itself without it.
# Usage: bash benchmarks/device_kit.sh   (then the README's "GPU check on a lent machine")
#   XLR_KIT_PYTHON=3.11 XLR_KIT_DIR=/tmp/kit: the same sets for another Python, elsewhere (to
#   try them on this machine); XLR_KIT_FROM: the interpreter whose packages' versions are pinned
#   (.venv/bin/python; not gpu_check.sh's XLR_PYTHON, the lent machine's)
set -euo pipefail
shopt -s inherit_errexit  # a failing $(...) stops the script too
cd "$(dirname "$0")/.."
PY=${XLR_KIT_FROM:-.venv/bin/python}  # whose installed versions the wheels pin
OUT=${XLR_KIT_DIR:-.whl}
PLATFORM=(--only-binary=:all: --python-version "${XLR_KIT_PYTHON:-3.12}" --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
    --platform manylinux1_x86_64 --platform any)
# the 'cuda' image's Python packages (KINDS.md, read 2026-11-17), normalised names
IMAGE="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio
h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime
onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint
packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache
protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson
six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect
urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"

# the project env's version of each of its packages: the pins of the core set, known to work
pins() { "$PY" -c 'import sys
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in sys.argv[1:]))' "$@"; }

# resolve REQUIREMENT... for the image's Python; print the pins neither the image nor the core
# set holds (the resolver's torch and CUDA libraries among them: the image's own are the point)
missing() {
    "$PY" -m pip install --dry-run --ignore-installed --quiet --report "$OUT/report.json" \
        "${PLATFORM[@]}" --target "$OUT/unused" "$@"
    IMAGE=$IMAGE "$PY" - "$OUT/report.json" "$OUT/core" << 'EOF'
import json, os, re, sys
from pathlib import Path

def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()

have = set(os.environ["IMAGE"].split())
have |= {norm(wheel.name.split("-")[0]) for wheel in Path(sys.argv[2]).glob("*.whl")}
for item in json.loads(Path(sys.argv[1]).read_text())["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if norm(name) not in have and not norm(name).startswith("nvidia-"):
        print(f"{name}=={version}")
EOF
}

fetch() {  # fetch SET PIN...: those exact wheels, nothing they depend on
    local dir=$OUT/$1
    shift
    rm -rf "$dir" && mkdir -p "$dir"
    "$PY" -m pip download --quiet --no-deps --dest "$dir" "${PLATFORM[@]}" "$@"
}

mkdir -p "$OUT"  # .gitignore keeps it out of commits; the device tool's carry takes it along
# open_clip needs ftfy (and it wcwidth) beyond the image; webdataset braceexpand; pydantic its
# core, annotated-types and typing-inspection; faiss-cpu and duckdb nothing the image lacks
core=$(pins open_clip_torch ftfy wcwidth webdataset braceexpand faiss-cpu duckdb \
    pydantic pydantic-core annotated-types typing-inspection)
# shellcheck disable=SC2086  # one word per pin
fetch core $core
# img2dataset pins webdataset<0.3 (xlr reads 1.x): itself without its dependencies, as the
# Makefile installs it, beside the runtime dependencies pyproject.toml's "laion" extra lists
rm -f "$OUT/report.json"  # never read an earlier run's resolution
# imagehash (with PyWavelets): notebook 01's near-duplicate check on the LAION path
rehearsal=$(missing "papermill>=2.7,<3" "nbconvert>=7.16,<8" "ipykernel>=6.29" \
    "mistune>=3,<4" "ipywidgets>=8" "albumentations>=1.3.0,<2" "exifread-nocycle>=3.0.1,<4" \
    "fire>=0.4.0,<0.8" "wandb>=0.17.0" "imagehash>=4.3,<5")
# shellcheck disable=SC2086
fetch rehearsal $rehearsal img2dataset==1.47.0
rm -rf "$OUT/report.json" "$OUT/unused"
for set in core rehearsal; do
    echo "$OUT/$set: $(find "$OUT/$set" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT/$set" | cut -f1)"
done
