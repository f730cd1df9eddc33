"""Test helper: with ``XLR_WRITE_AUDIT=DIR`` set, every torchrun rank records the paths it opens
for writing, renames, creates or removes under ``$XLR_ROOT`` in ``DIR/rank<RANK>.txt``.

Python imports ``sitecustomize`` at start-up from ``sys.path``, so putting this folder on
``PYTHONPATH`` audits each rank of ``python -m torch.distributed.run ... -m xlr.cli`` unchanged
(``sys.addaudithook``: the writes of Python code, which every xlr writer goes through, plus
the renames that publish the files native code writes). The launcher itself has no ``RANK``.
"""

import os
import sys

_AUDIT, _RANK, _ROOT = (os.environ.get(k) for k in ("XLR_WRITE_AUDIT", "RANK", "XLR_ROOT"))
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_CHANGES = {"os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"}

if _AUDIT and _RANK is not None and _ROOT:
    _root = os.path.realpath(_ROOT) + os.sep
    _log = open(os.path.join(_AUDIT, f"rank{_RANK}.txt"), "a", buffering=1)  # noqa: SIM115

    def _under_root(path: object) -> str | None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return None  # a file descriptor
        path = os.path.abspath(path)
        return path if path.startswith(_root) else None

    def _hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writes = any(c in mode for c in "wax+") if mode else bool(flags & _WRITE_FLAGS)
            paths = [path] if writes else []
        elif event in _CHANGES:
            paths = [args[0]] + ([args[1]] if event == "os.rename" else [])
        else:
            return
        for path in filter(None, map(_under_root, paths)):
            _log.write(f"{event} {path}\n")

    sys.addaudithook(_hook)
