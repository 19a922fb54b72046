"""``trainperf download``: any MLCommons dataset from its .uri, verified (the R2 downloader)."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainperf.cli.common import console, plain


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "download",
        help="download and verify any MLCommons dataset from its .uri (the R2 downloader)",
        description="Fetch URI (https://…/metadata/<name>.uri), then every file its <name>.md5 "
        "lists, into DIR: in parallel, resuming partial files, retrying transient errors, "
        "checking each MD5. Protected datasets read CF_ACCESS_CLIENT_ID + "
        "CF_ACCESS_CLIENT_SECRET or CF_ACCESS_TOKEN. Exit 0 only when every file is verified.",
    )
    p.add_argument("uri", metavar="URI")
    p.add_argument("-d", "--dir", type=Path, required=True, help="download folder")
    p.add_argument(
        "--include", action="append", metavar="GLOB", help="only files matching (repeatable)"
    )
    p.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")
    p.add_argument("--verify", action="store_true", help="only check DIR against its .md5 list")


def cmd(args: argparse.Namespace) -> int:
    from trainperf.data import mlcommons

    if args.verify:
        mlcommons.verify_download(args.dir, include=args.include, log=plain)
    else:
        mlcommons.download_dataset(
            args.uri, args.dir, include=args.include, workers=args.workers, log=plain,
            console=console,
        )  # fmt: skip
    return 0
