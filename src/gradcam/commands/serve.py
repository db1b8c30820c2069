"""``gradcam serve``: a local web app to explore one model's explanations (needs the ``app`` extra)."""

from __future__ import annotations

import argparse
import secrets
import socket
import sys

from ..image import MAX_PIXELS


def register(subparsers) -> None:
    """Add the ``serve`` subcommand."""
    p = subparsers.add_parser(
        "serve",
        help="a local web app: upload a photo, pick classes, methods, layers, opacity; JSON API",
        description="Serve one model on a local web page: upload or pick a photo, see the top-5, click a class "
        "to see its map, switch the method, the layer and the overlay's opacity, compare two methods "
        "side by side, download the overlay and the JSON. Scripts can POST an image to /api/explain. "
        "Binds to 127.0.0.1; another --host needs --token, which every request must then carry. "
        "Needs: pip install 'gradcam[app]'.",
    )
    p.add_argument(
        "--model",
        default="efficientnet-lite0",
        help="efficientnet-lite0 (default, built in), torchvision:NAME, timm:NAME, a TorchScript file, "
        "or package.module:factory",
    )
    p.add_argument("--weights", metavar="FILE", help="state-dict file for --model (needed for timm:NAME)")
    p.add_argument(
        "--device", default="cpu", help="torch device for the model: cpu (default), cuda, cuda:1, mps"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    p.add_argument(
        "--token",
        help="secret every request must carry (?token=, X-Gradcam-Token or Authorization: "
        "Bearer); required with a --host other than loopback",
    )
    p.add_argument(
        "--max-pixels",
        type=float,
        default=MAX_PIXELS / 1e6,
        metavar="MP",
        help=f"refuse uploads whose header declares more megapixels (default {MAX_PIXELS / 1e6:g}, as "
        "'gradcam explain'), before decoding them",
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=64, metavar="MB", help="largest upload in MB (default 64)"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=2,
        metavar="N",
        help="explanations computed at once; more requests wait (default 2; bounds the memory)",
    )
    p.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    """Refuse unsafe or impossible settings with a message that says the fix."""
    from ..integrations.session import is_loopback

    if not is_loopback(args.host) and not args.token:
        raise ValueError(
            f"--host {args.host} accepts connections from other machines: add --token SECRET "
            f"(e.g. --token {secrets.token_urlsafe(16)}); every request must then carry it."
        )
    if args.token is not None and len(args.token) < 8:
        raise ValueError(
            "--token must be at least 8 characters long; use e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(16))'."
        )
    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be in 0..65535; got {args.port}.")
    if args.max_pixels <= 0 or args.max_upload_mb <= 0 or args.concurrency < 1:
        raise ValueError("--max-pixels and --max-upload-mb must be positive and --concurrency at least 1.")


def run(args: argparse.Namespace) -> int:
    """Load the model, bind the socket, print the URL and serve until Ctrl-C."""
    check_args(args)
    import uvicorn

    from ..cli import started
    from ..integrations.app import create_app  # the app extra's clear ImportError before uvicorn's
    from ..integrations.session import ServedModel, is_loopback
    from ..models import load_model

    loaded = load_model(args.model, weights=args.weights, device=args.device)
    served = ServedModel(loaded, max_pixels=int(args.max_pixels * 1e6))
    app = create_app(
        served,
        token=args.token,
        loopback_only=is_loopback(args.host),
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_concurrent=args.concurrency,
    )
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        raise ValueError(
            f"Cannot listen on {args.host}:{args.port} ({e.strerror or e}); pick another --port "
            "(0: any free one)."
        ) from None
    sock.listen(128)  # connections queue from now on, so the printed URL works at once
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{port}/" + (f"?token={args.token}" if args.token else "")
    print(f"gradcam serve: {loaded.name} on {url}", flush=True)
    started()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # pragma: no cover - uvicorn handles SIGINT itself
        pass
    print("gradcam serve: stopped", file=sys.stderr)
    return 0
