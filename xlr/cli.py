"""Command line: ``xlr reproduce PARAMS`` runs the study; ``xlr prepare PARAMS`` builds its bases;
``xlr tune PARAMS`` chooses the learning rates on the validation split (:mod:`xlr.tuning`);
``xlr train PARAMS --arm NAME`` trains arms as notebooks 02 and 03 do, also under ``torchrun``
(:mod:`xlr.launch`).

``prepare`` generates the embedded corpus (refused if its held-out pools leak), trains its
tokenizer and pretrains one tiny base per ``run.base_seeds`` entry (each cached), then prints
every base's text-to-image R@1 per language on the validation pool against the language's share
of the pretraining mix.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import torch

from xlr.config import ParamsError, load_params


def _prepare(args: argparse.Namespace) -> int:
    from xlr.data.prepare import prepare_data
    from xlr.eval.runner import base_report
    from xlr.train.pretrain import ensure_base_model

    params = load_params(args.params)
    if params.run.threads:
        torch.set_num_threads(params.run.threads)
    prepare_data(params, progress=not args.quiet)  # refuses a corpus whose held-out pools leak
    if params.model.kind != "tiny":
        print(f"model.kind is {params.model.kind!r}: nothing to pretrain offline")
        return 0
    for base_seed in params.run.base_seeds:
        model_dir = ensure_base_model(params, base_seed, progress=not args.quiet)
        table = base_report(params, base_seed)
        print(f"\nbase seed {base_seed}: {model_dir}")
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


def _tune(args: argparse.Namespace) -> int:
    from xlr.data.prepare import finetune_pool, prepare_data, read_contract
    from xlr.tuning import tune, tuning_dir

    params = load_params(args.params)
    if params.run.threads:
        torch.set_num_threads(params.run.threads)
    if args.base:  # on LAION that lists the metadata and reads every image: notebook 01's work
        prepare_data(params, progress=not args.quiet)
    else:
        try:
            read_contract(params)
        except FileNotFoundError as err:
            print(f"error: {err}; or add --base to prepare it here", file=sys.stderr)
            return 2
    result = tune(params, finetune_pool(params))
    if result.sweep.empty:
        print("train.tune has no learning rates to try: nothing to tune")
        return 0
    print(result.sweep.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"chosen: {result.rates} -> {tuning_dir(params)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from xlr.launch import LaunchError, train

    if not args.arm and not args.all:
        print(
            "error: name an arm (--arm NAME, repeatable) or train them all (--all)", file=sys.stderr
        )
        return 2
    params = load_params(args.params)
    try:
        folders = train(
            params, None if args.all else args.arm, build=args.base, progress=not args.quiet,
            source=args.params,
        )  # fmt: skip
    except (LaunchError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":  # one list of folders, not one per rank
        print("\n".join(map(str, folders)))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from xlr.paths import report_dir
    from xlr.report import NotebookFailed, reproduce

    try:
        runs = reproduce(args.params, force=args.force)
    except NotebookFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for run in runs:
        print(f"{run.name:32s} {run.status:8s} {run.wall_s:7.1f} s")
    print(f"index: {report_dir(load_params(args.params)) / 'index.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``xlr`` argument parser (one sub-command per stage)."""
    parser = argparse.ArgumentParser(prog="xlr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="generate the corpus and pretrain the bases")
    prepare.add_argument("params", help="a params YAML file, e.g. params/smoke.yaml")
    prepare.add_argument("--quiet", action="store_true", help="no progress bars")
    prepare.set_defaults(handler=_prepare)
    tune = commands.add_parser(
        "tune", help="choose learning rates on the validation split (train.tune)"
    )
    tune.add_argument("params", help="a params YAML file, e.g. params/synthetic.yaml")
    tune.add_argument(
        "--base", action="store_true", help="first prepare the data (the tiny bases always are)"
    )
    tune.add_argument("--quiet", action="store_true", help="no progress bars")
    tune.set_defaults(handler=_tune)
    train = commands.add_parser(
        "train", help="train arms as notebooks 02/03 do; under torchrun, rank 0 writes"
    )
    train.add_argument("params", help="a params YAML file, e.g. params/smoke.yaml")
    which = train.add_mutually_exclusive_group()
    which.add_argument(
        "--arm",
        action="append",
        help="an arm of the params file (an unknown one is refused with the list)",
    )
    which.add_argument("--all", action="store_true", help="every configured arm, in order")
    train.add_argument(
        "--base", action="store_true", help="first prepare the data and pretrain missing bases"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=_train)
    reproduce = commands.add_parser(
        "reproduce", help="run every notebook with papermill into reports/<run.name>/"
    )
    reproduce.add_argument("params", help="a params YAML file, e.g. params/smoke.yaml")
    reproduce.add_argument("--force", action="store_true", help="re-run completed notebooks")
    reproduce.set_defaults(handler=_reproduce)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xlr`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
