"""`keras-hpe dictionary build`: the patch dictionary of synthetic label patches (paper section 3.2)."""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_hpe.restoration.index import DEFAULT_SEARCH_K, DEFAULT_TREES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `dictionary build`."""
    dictionary = subparsers.add_parser(
        "dictionary", help="the dictionary of synthetic label patches used to restore predictions"
    )
    actions = dictionary.add_subparsers(dest="dictionary_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="extract label patches from a synthetic data set and index them with Annoy (Hamming)",
        description="Extract P x P label patches around every hand pixel of every EVERY-th frame "
        "(the paper uses a third of the synthetic set), de-duplicate them and build an Annoy index.",
    )
    build.add_argument("--data", type=Path, required=True, help="synthetic data set folder (must have labels)")
    build.add_argument("--out", type=Path, required=True, help="dictionary folder to write (replaced if it is one)")
    build.add_argument("--patch", type=int, default=7, help="patch size P, odd (default: 7)")
    build.add_argument("--trees", type=int, default=DEFAULT_TREES, help=f"Annoy trees (default: {DEFAULT_TREES})")
    build.add_argument(
        "--search-k", type=int, default=DEFAULT_SEARCH_K,
        help=f"default Annoy search_k stored with the index (default: {DEFAULT_SEARCH_K})",
    )
    build.add_argument("--every", type=int, default=3, help="use every EVERY-th frame (default: 3, a third)")
    build.add_argument("--seed", type=int, default=0, help="Annoy's random seed (default: 0)")
    build.add_argument(
        "--jobs", type=int, default=1,
        help="threads building trees; > 1 is faster but the tree layout is not reproducible (default: 1)",
    )
    build.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    """Build the dictionary from every `args.every`-th frame's labels of `args.data`."""
    from keras_hpe.data.dataset import load_arrays, read_manifest
    from keras_hpe.errors import UserError
    from keras_hpe.outputs import check_output_folder
    from keras_hpe.restoration.index import build_dictionary

    if args.every < 1:
        raise UserError(f"--every must be >= 1, got {args.every}")
    check_output_folder(args.out, "--out")
    manifest = read_manifest(args.data).to_dict()
    labels = load_arrays(args.data, ["labels"])["labels"][:: args.every]
    source = {
        "path": str(Path(args.data).resolve()),
        "every": args.every,
        "frames_used": int(len(labels)),
        "manifest": {key: value for key, value in manifest.items() if key != "shards"},
    }
    meta = build_dictionary(
        labels, args.out, patch=args.patch, n_trees=args.trees, search_k=args.search_k, seed=args.seed,
        n_jobs=args.jobs, source_manifest=source, progress=not args.no_progress,
    )
    print(
        f"dictionary {args.out}: {meta.patches_unique:,} unique patches of {meta.patches_total:,} "
        f"({meta.frames} frames, P = {meta.patch}, {meta.n_trees} trees)"
    )
    return 0
