#!/usr/bin/env bash
# The wheels a lent GPU machine lacks for benchmarks/gpu_check.sh, downloaded here into .whl/.
#
# A lent machine (the `device` tool) reaches no package index; its image has Python 3.12 with
# CUDA torch, transformers, peft, pandas, pyarrow, statsmodels, seaborn, pytest and more, but
# not open_clip, webdataset, faiss, duckdb or pydantic, nor the notebook stack the rehearsal
# runs. This resolves xlr's needs for CPython 3.12 on manylinux x86-64 with pip, drops every
# package the image already has (IMAGE below, as the device tool's KINDS.md lists it), and
# leaves two sets, each small enough to travel with the working tree in one call (64 MiB):
#   .whl/core       what `xlr train`, the ranking and the benchmarks import (steps a, d, e)
#   .whl/rehearsal  papermill, nbconvert, ipykernel and img2dataset's needs (step b)
# gpu_check.sh installs XLR_WHEELS (a folder of wheels) into a scratch site folder first.
# faiss-gpu (135 MB) cannot travel in one call; step (c) skips itself without it.
# Usage: bash benchmarks/device_kit.sh   (then see the README, "GPU check on a lent machine")
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${XLR_PYTHON:-.venv/bin/python}
OUT=.whl
PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp
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

# name of a wheel file, normalised as pip compares names (PEP 503)
wheel_name() { basename "$1" | cut -d- -f1 | tr '[:upper:]_.' '[:lower:]--'; }

# download_set DIR REQUIREMENT...: resolve, then keep only what neither the image nor the sets
# before it hold (the image's own torch is kept: its CUDA build is the point)
download_set() {
    local dir=$OUT/$1
    shift
    rm -rf "$dir" && mkdir -p "$dir"
    "$PY" -m pip download --quiet --dest "$dir" "${PLATFORM[@]}" "$@"
    for wheel in "$dir"/*.whl; do
        name=$(wheel_name "$wheel")
        if [[ " $(echo "$IMAGE" | tr '\n' ' ') " == *" $name "* ]] ||
            compgen -G "$OUT/core/$(basename "$wheel" | cut -d- -f1)-*.whl" > /dev/null &&
            [[ "$dir" != "$OUT/core" ]]; then
            rm "$wheel"
        fi
    done
}

mkdir -p "$OUT"
grep -qxF "/$OUT/" .git/info/exclude 2> /dev/null || echo "/$OUT/" >> .git/info/exclude
download_set core open_clip_torch==3.3.0 "webdataset>=1.0.2,<2" "faiss-cpu>=1.15,<1.16" \
    "duckdb>=1.1,<3" "pydantic>=2.8,<3" "torch==2.11.0"
# img2dataset pins webdataset<0.3 (xlr reads 1.x): itself without its dependencies, as the
# Makefile installs it, beside the runtime dependencies pyproject.toml's "laion" extra lists
download_set rehearsal "papermill>=2.7,<3" "nbconvert>=7.16,<8" "ipykernel>=6.29" \
    "mistune>=3,<4" "ipywidgets>=8" "albumentations>=1.3.0,<2" "exifread-nocycle>=3.0.1,<4" \
    "fire>=0.4.0,<0.8" "wandb>=0.17.0" "opencv-python-headless>=4.5.5.62,<5" "torch==2.11.0"
"$PY" -m pip download --quiet --no-deps --dest "$OUT/rehearsal" "${PLATFORM[@]}" \
    img2dataset==1.47.0
for set in core rehearsal; do
    echo "$OUT/$set: $(find "$OUT/$set" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT/$set" | cut -f1)"
done
