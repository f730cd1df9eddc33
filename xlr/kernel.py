"""The ``xlr`` Jupyter kernel: this environment's Python, named so the notebooks find it.

The notebooks name the kernel ``xlr`` in their metadata. A system JupyterLab that opened them
with its own ``python3`` would run a Python without ``xlr`` installed. Registering ``xlr`` from
the project's environment (``make env`` and ``make lab`` do, ``xlr reproduce`` does when it is
missing) under that environment's prefix makes its Jupyter (``.venv/bin/jupyter lab``) start
the right one. ``python -m xlr.kernel [--prefix DIR]`` registers it (default: this
environment's ``sys.prefix``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

KERNEL_NAME = "xlr"
DISPLAY_NAME = "Python (xlr)"


def install_kernel(prefix: str | Path | None = None) -> Path:
    """Register this interpreter as the ``xlr`` kernel under ``prefix`` (default ``sys.prefix``,
    so it goes with the environment, not the user); returns the kernel spec's folder."""
    from ipykernel.kernelspec import install

    target = str(prefix) if prefix is not None else sys.prefix
    return Path(install(kernel_name=KERNEL_NAME, display_name=DISPLAY_NAME, prefix=target))


def _same_python(path: str) -> bool:
    return Path(path).absolute() == Path(sys.executable).absolute()


def ensure_kernel() -> None:
    """Make the ``xlr`` kernel run this interpreter: register it when no Jupyter path has it, or
    when the one found is this environment's own but points elsewhere (a moved environment).

    Raises RuntimeError when another registration (a user's or the system's) shadows this
    environment's, since papermill would run the notebooks with that other Python.
    """
    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        install_kernel()
        return
    if _same_python(spec.argv[0]):
        return
    own = Path(sys.prefix).absolute()
    if Path(spec.resource_dir).absolute().is_relative_to(own):
        install_kernel()
        return
    raise RuntimeError(
        f"the Jupyter kernel {KERNEL_NAME!r} registered in {spec.resource_dir} runs "
        f"{spec.argv[0]}, not this environment's {sys.executable}; remove it "
        f"(`jupyter kernelspec remove {KERNEL_NAME}`) and run `{sys.executable} -m xlr.kernel`"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m xlr.kernel``."""
    parser = argparse.ArgumentParser(prog="python -m xlr.kernel", description=__doc__)
    parser.add_argument("--prefix", help="install under PREFIX/share/jupyter (default sys.prefix)")
    args = parser.parse_args(argv)
    print(f"kernel {KERNEL_NAME!r} ({DISPLAY_NAME}): {install_kernel(args.prefix)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
