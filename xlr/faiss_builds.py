"""The faiss build xlr imports: faiss-cpu or faiss-gpu (the ``cpu`` and ``gpu`` extras), one only.

Every faiss distribution installs the same top-level ``faiss`` module. With two of them in one
environment the files of the one installed last overwrite the other's, so which faiss runs (and
whether it sees the GPU) depends on install order, and uninstalling either breaks the other.
pip cannot express "one of", so faiss is not a core dependency: ``make env`` installs the ``cpu``
extra, a GPU machine ``make env FAISS=gpu`` (README, "The real study"), and
:func:`import_faiss` refuses an environment holding two builds, or none, with the command that
mends it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType

# pip's official wheels, the older CUDA 12 one, and conda-forge's package (installed as "faiss")
FAISS_DISTRIBUTIONS: tuple[str, ...] = ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss")
MEND = (
    "pip uninstall -y {names}, then pip install -e '.[cpu]' (or '.[gpu]' on a GPU machine) in the "
    "checkout, or rebuild the environment with make env (FAISS=gpu for the GPU build)"
)


def installed_faiss() -> dict[str, str]:
    """Each installed faiss distribution's version, by name."""
    found = {}
    for name in FAISS_DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def import_faiss() -> ModuleType:
    """The ``faiss`` module, once it is certain which build provides it (module doc)."""
    found = installed_faiss()
    if len(found) > 1:
        names = " ".join(found)
        raise ImportError(
            f"{' and '.join(f'{name} {version}' for name, version in found.items())} are "
            "installed together; each writes the one `faiss` module over the other's, so which "
            f"runs depends on install order. Keep one: {MEND.format(names=names)}"
        )
    try:
        return importlib.import_module("faiss")
    except ImportError as error:
        raise ImportError(
            "faiss is not installed (xlr needs one build, given as an extra): "
            f"{MEND.format(names='faiss-cpu faiss-gpu')}"
        ) from error
