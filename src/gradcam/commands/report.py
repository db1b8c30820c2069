"""``gradcam report DIR``: write DIR/index.html, a static page of the results in DIR, and print its path."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the ``report`` subcommand."""
    p = subparsers.add_parser(
        "report",
        help="write DIR/index.html: a self-contained page of the results in DIR",
        description="Write DIR/index.html for the output folder of 'gradcam explain --json' (a gallery of the "
        "overlays with predictions, filters and the failed files) or of 'gradcam evaluate --out' "
        "(tables and charts). The page is static: it opens from disk and fetches nothing.",
    )
    p.add_argument(
        "folder", metavar="DIR", help="the --out folder of 'gradcam explain --json' or 'gradcam evaluate'"
    )
    p.add_argument("--title", help="page title (default: 'gradcam report: DIR')")
    p.add_argument("--page-size", type=int, default=50, metavar="N", help="photos per page (default 50)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the page and print its path."""
    from ..report import write_report

    if args.page_size < 1:
        raise ValueError(f"--page-size must be at least 1; got {args.page_size}.")
    print(write_report(args.folder, title=args.title, page_size=args.page_size))
    return 0
