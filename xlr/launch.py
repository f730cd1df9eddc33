"""``xlr train PARAMS --arm NAME``: the arms of notebooks 02 and 03 trained from the command line,
in one process or under ``torchrun`` on one or many nodes.

Why not wrap the notebooks in ``torchrun``: every rank would run every cell and write every
cache, checkpoint and results table. Here rank 0 alone writes: it prepares what the arms start
from (with ``--base``: the data contract and the tiny bases, as ``xlr prepare`` does; and the
captions' token ids), while the other ranks wait (:func:`xlr.runtime.rank0_first`: a failure there
stops them too) and then read what it wrote. The
training drivers (:func:`xlr.train.finetune.train_arm`, :func:`xlr.train.adapters.train_adapters`)
already write their logs, checkpoints and outputs from rank 0 only.

Each arm is trained by the call notebook 02 or 03 makes, with the learning rates the tuning
chose (:func:`xlr.tuning.tuned_params`), into the arm's own folder: the notebooks then find it
finished and notebook 04 evaluates it. On CPU, one process gives the notebook's weights bit for
bit at the same thread count; ranks sharing one global batch give them to float tolerance
(dropout and random crops aside: each rank draws its own masks, and the crops of images larger
than the tower's input are drawn across each rank's shard).

Every rank reads the run's folders, so on several nodes ``runs/`` (``run.runs_dir`` and
``run.cache_dir``) must be on a filesystem every node sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from xlr.arms import Arm, trained_arms
from xlr.config import Params
from xlr.data.prepare import finetune_pool, prepare_data, read_contract
from xlr.models.bases import base_model_dir, is_base_cached, load_base_tokenizer
from xlr.runtime import init_distributed, rank0_first
from xlr.train.pretrain import ensure_base_model
from xlr.train.study import ensure_arm
from xlr.train.tokens import cached_tokens, token_cache_dir
from xlr.tuning import tuned_params


class LaunchError(ValueError):
    """A request ``xlr train`` cannot serve; the message names the params file and the fix."""


def configured_arm_names(params: Params) -> list[str]:
    """The names ``--arm`` accepts: every trained arm of the params, notebook 02's then 03's."""
    return list(dict.fromkeys(arm.name for arm in trained_arms(params)))


def select_arms(params: Params, names: Sequence[str] | None, source: str = "params") -> list[Arm]:
    """Every model (base x seed) of the arms ``names``, in the study's order; None: all of them.

    An evaluated adapter name (``adapters-nearest``) selects its trained adapters (``adapters``).
    An unknown name is refused listing the configured arms.
    """
    every = trained_arms(params)
    if names is None:
        return every
    known = configured_arm_names(params)
    wanted = []
    for name in names:
        try:
            trained = Arm.parse(name).with_fallback(None).name
        except ValueError:
            trained = None
        if trained not in known:
            raise LaunchError(
                f"{source}: arm {name!r} is not configured (train.arms, train.alphas, "
                f"train.trainable, adapters); the configured arms are: {', '.join(known)}"
            )
        wanted.append(trained)
    return [arm for arm in every if arm.name in wanted]


def _check_inputs(params: Params, arms: Sequence[Arm], source: str) -> None:
    """Refuse, without ``--base``, arms whose data or tiny base is not there yet."""
    try:
        read_contract(params)
    except FileNotFoundError as err:
        raise LaunchError(f"{err}; or add --base to prepare it here") from None
    if params.model.kind != "tiny":
        return
    for base_seed in dict.fromkeys(arm.base_seed for arm in arms):
        if base_seed is not None and not is_base_cached(params, base_seed):
            raise LaunchError(
                f"{source}: the tiny base of seed {base_seed} is not pretrained "
                f"({base_model_dir(params, base_seed)}); add --base to build it first, or run "
                f"`xlr prepare {source}`"
            )


def _prepare(params: Params, arms: Sequence[Arm], build: bool, progress: bool) -> None:
    """Rank 0's part before training: with ``build`` the data and the arms' tiny bases, then the
    token ids of the fine-tuning pool, so no other rank writes a cache."""
    if build:
        prepare_data(params, progress=progress)  # refuses a corpus whose held-out pools leak
        if params.model.kind == "tiny":
            for base_seed in dict.fromkeys(arm.base_seed for arm in arms):
                ensure_base_model(params, base_seed, progress=progress)
    pool = finetune_pool(params)  # the trainers tokenise these captions (data.train_langs)
    for base_seed in dict.fromkeys(arm.base_seed for arm in arms):
        tokenizer = load_base_tokenizer(params, base_seed)  # not its 1.4 GB model
        cached_tokens(tokenizer, pool.captions["caption"].tolist(), token_cache_dir(params))


def train(
    params: Params,
    names: Sequence[str] | None,
    *,
    build: bool = False,
    progress: bool = True,
    source: str = "params",
) -> list[Path]:
    """Train the arms ``names`` (None: every configured arm) of ``params`` on every rank of
    this job; returns their folders. Finished arms are skipped and interrupted ones resume,
    as in the notebooks."""
    arms = select_arms(params, names, source)
    if params.run.threads:
        torch.set_num_threads(params.run.threads)
    tuned = tuned_params(params)  # notebook 02's chosen rates: the notebooks' arm folders
    ctx = init_distributed(params.run.device)
    show = progress and ctx.is_main
    try:
        if not build:
            _check_inputs(params, arms, source)
        rank0_first(ctx, lambda: _prepare(params, arms, build, show))
        params, pool = tuned, finetune_pool(tuned)
        folders = [ensure_arm(params, arm, pool, show) for arm in arms]
    finally:  # a failed step must not leave the process group (and its NCCL threads) behind
        if ctx.world_size > 1:
            dist.destroy_process_group()
    return folders
