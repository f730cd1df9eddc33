"""JupyterLab set-up: the ``xlr`` kernel runs this environment's Python, the notebooks name it,
and ``make lab`` serves on localhost behind a token (as root too)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from xlr.kernel import DISPLAY_NAME, KERNEL_NAME, install_kernel, main

ROOT = Path(__file__).resolve().parents[1]


def test_kernel_registration_points_at_this_python(tmp_path: Path, capsys) -> None:
    """What ``make env`` and ``make lab`` run (``python -m xlr.kernel``), into a temporary
    prefix: the spec named ``xlr`` starts ipykernel with this interpreter, and Jupyter finds it
    there."""
    assert main(["--prefix", str(tmp_path)]) == 0
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / KERNEL_NAME
    assert str(spec_dir) in capsys.readouterr().out
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable and "ipykernel_launcher" in spec["argv"]
    assert spec["display_name"] == DISPLAY_NAME
    manager = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
    assert manager.get_kernel_spec(KERNEL_NAME).argv[0] == sys.executable
    assert install_kernel(tmp_path) == spec_dir  # registering again replaces it in place


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
def test_notebooks_name_the_xlr_kernel(path: Path) -> None:
    kernelspec = nbformat.read(path, as_version=4).metadata.kernelspec
    assert kernelspec["name"] == KERNEL_NAME and kernelspec["language"] == "python"


def lab_command(stamp: Path, token: str | None) -> str:
    """What ``make lab`` runs, with ``echo`` standing in for ``jupyter`` (so nothing is served):
    this environment as the venv and a fresh ``stamp`` so ``env`` has nothing to rebuild."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    stamp.touch()
    env = {key: value for key, value in os.environ.items() if key != "XLR_LAB_TOKEN"}
    if token is not None:
        env["XLR_LAB_TOKEN"] = token
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "lab",
            f"VENV={sys.prefix}",
            f"STAMP={stamp}",
            "JUPYTER=echo jupyter",
        ],  # fmt: skip
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    [command] = [line for line in result.stdout.splitlines() if line.startswith("jupyter lab")]
    return command


def test_make_lab_listens_on_localhost_with_a_token(tmp_path: Path) -> None:
    command = lab_command(tmp_path / "stamp", "planted-token")
    assert "--ip=127.0.0.1" in command and "--IdentityProvider.token=planted-token" in command
    assert "--MultiKernelManager.default_kernel_name=xlr" in command
    assert ("--allow-root" in command.split()) == (os.getuid() == 0)  # root needs it
    random = lab_command(tmp_path / "stamp", None)
    token = random.split("--IdentityProvider.token=")[1].split()[0]
    assert len(token) >= 24  # a fresh random token when none is given


def test_a_kernel_of_another_python_shadowing_xlr_is_refused(tmp_path: Path, monkeypatch) -> None:
    """papermill would run the notebooks with whichever ``xlr`` Jupyter finds first: one that
    runs another Python (here planted first on JUPYTER_PATH) stops ``xlr reproduce`` with the
    fix, instead of failing later on a missing ``xlr`` import."""
    from xlr.kernel import ensure_kernel

    spec_dir = tmp_path / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    argv = ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "other", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="jupyter kernelspec remove xlr"):
        ensure_kernel()
