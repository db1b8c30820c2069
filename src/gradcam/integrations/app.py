"""The ``gradcam serve`` web app (Starlette, served by uvicorn; extra ``app``): one model, a page and a JSON API.

- ``GET /``: the page (upload or pick a photo, top-5, click a class, method, layer, opacity, two methods
  side by side, download the overlay and the JSON);
- ``GET /api/info``: model, methods, spatial layers (the auto choice marked), demo photos;
- ``GET /api/demo/<name>``: a bundled photo (PNG);
- ``POST /api/explain``: an image (multipart field ``image``, or the raw file as the body) and the options
  ``method``, ``layer``, ``target``, ``top_k``, ``alpha``, ``overlay_side`` (form fields or query
  parameters) -> JSON: ``predictions`` (top-5), ``explanations`` (class, id, score, probability,
  ``peak`` (x, y), ``box`` (x0, y0, x1, y1), ``overlay`` as PNG data).

Uploads: at most ``max_upload_bytes`` (by Content-Length, before reading; a body without one is refused),
written only into a fresh temporary folder that is deleted after the request, and refused before decoding
when the file's header declares more than ``max_pixels`` (the CLI's limit). With a ``token`` every request
must carry it (``X-Gradcam-Token`` header, ``Authorization: Bearer``, or ``?token=``). At most
``max_concurrent`` explanations run at once (the rest wait), which bounds the memory.
"""

from __future__ import annotations

import hmac
import os
import tempfile
from typing import Optional

try:
    import anyio
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route
except ImportError:  # pragma: no cover - depends on what is installed
    raise ImportError("gradcam serve needs the web app's packages: pip install 'gradcam[app]'") from None

from ..image import ImageLoadError
from .session import LOOPBACK, ServedModel, is_loopback

__all__ = ["MAX_UPLOAD_BYTES", "TokenMiddleware", "create_app", "is_loopback"]
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
STATIC = os.path.join(os.path.dirname(__file__), "static")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class TokenMiddleware:
    """Refuse (401) any request whose token (header ``X-Gradcam-Token``, ``Authorization: Bearer`` or query
    ``token``) is not ``token``; compared in constant time."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            request = Request(scope)
            given = request.headers.get("x-gradcam-token") or request.query_params.get("token") or ""
            auth = request.headers.get("authorization", "")
            if not given and auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), self.token):
                response = _error(
                    401,
                    "missing or wrong token: open the URL that 'gradcam serve' printed "
                    "(?token=...) or send the X-Gradcam-Token header",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _options(request: Request, form) -> dict:
    """Explain options from form fields, else query parameters, with clear errors for bad values."""

    def get(name, default=None):
        v = form.get(name) if form is not None else None
        return request.query_params.get(name, default) if v in (None, "") else v

    try:
        opts = {
            "method": str(get("method", "gradcam")),
            "layer": get("layer") or None,
            "target": get("target") or None,
            "top_k": int(get("top_k", 5)),
            "alpha": float(get("alpha", 0.5)),
            "overlay_side": int(get("overlay_side", 512)),
        }
    except ValueError:
        raise ValueError("top_k and overlay_side must be integers and alpha a number in [0, 1].") from None
    if opts["layer"] == "auto":
        opts["layer"] = None
    return opts


class _Handlers:
    """The app's endpoints, sharing the served model, the page and the concurrency limit."""

    def __init__(self, served: ServedModel, max_upload_bytes: int, max_concurrent: int):
        self.served, self.max_upload_bytes = served, max_upload_bytes
        self.limiter = anyio.CapacityLimiter(max_concurrent)
        with open(os.path.join(STATIC, "serve.html"), encoding="utf-8") as f:
            self.page = f.read()

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self.page, headers={"Cache-Control": "no-store"})

    async def info(self, request: Request) -> Response:
        return JSONResponse(self.served.info())

    async def demo(self, request: Request) -> Response:
        from .session import DEMO_DIR, DEMO_PHOTOS

        name = request.path_params["name"]
        if name not in DEMO_PHOTOS:
            return _error(404, f"no demo photo {name!r}; there are: {', '.join(DEMO_PHOTOS)}")
        with open(os.path.join(DEMO_DIR, DEMO_PHOTOS[name]), "rb") as f:
            return Response(f.read(), media_type="image/png")

    async def explain(self, request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is None:
            return _error(
                411, "send the image with a Content-Length header (chunked uploads are not accepted)"
            )
        if not length.isdigit() or int(length) > self.max_upload_bytes:
            return _error(
                413, f"upload too large: {length} bytes, over the limit of {self.max_upload_bytes} bytes"
            )
        with tempfile.TemporaryDirectory(prefix="gradcam-serve-") as tmp:
            try:
                form, path = await _receive(request, tmp)
                opts = _options(request, form)
                async with self.limiter:
                    result = await run_in_threadpool(_explain_file, self.served, path, opts)
            except ImageLoadError as e:
                return _error(413 if "too large" in e.reason else 400, f"upload: {e.reason}")
            except (ValueError, TypeError) as e:
                return _error(400, str(e))
        return JSONResponse(result)


def create_app(
    served: ServedModel,
    *,
    token: Optional[str] = None,
    loopback_only: bool = True,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_concurrent: int = 2,
) -> Starlette:
    """The ASGI app for ``served``. ``token``: required on every request when set. ``loopback_only``:
    refuse Host headers other than 127.0.0.1/localhost/[::1] (a DNS-rebinding guard for a local app).
    ``max_upload_bytes``: the largest request body; ``max_concurrent``: explanations computed at once."""
    h = _Handlers(served, max_upload_bytes, max_concurrent)
    middleware = []
    if loopback_only:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK) + ["[::1]"]))
    if token:
        middleware.append(Middleware(TokenMiddleware, token=token))
    routes = [
        Route("/", h.index),
        Route("/api/info", h.info),
        Route("/api/demo/{name}", h.demo),
        Route("/api/explain", h.explain, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=middleware)


async def _receive(request: Request, tmp: str):
    """Write the uploaded file into ``tmp`` (the only place it is written); return (form or None, path)."""
    path = os.path.join(tmp, "upload")
    ctype = request.headers.get("content-type", "")
    form = None
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=16)
        try:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise ValueError("no image: send the file in the multipart field 'image'")
            with open(path, "wb") as f:
                while chunk := await upload.read(1 << 20):
                    f.write(chunk)
        finally:
            await form.close()
    else:
        with open(path, "wb") as f:
            async for chunk in request.stream():
                f.write(chunk)
    return form, path


def _explain_file(served: ServedModel, path: str, opts: dict) -> dict:
    """Load (header-checked) and explain the uploaded file; runs in a worker thread."""
    return served.explain(served.load(path), **opts)
