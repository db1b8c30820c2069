"""Pytest fixtures for object storage: an S3 API served on 127.0.0.1 by moto's server (a random free port).

- ``s3_server``: the endpoint URL (``http://127.0.0.1:PORT``); AWS test credentials and region are set in the
  environment while it runs (``AWS_ACCESS_KEY_ID=testing`` ...), ``AWS_ENDPOINT_URL`` is not (tests that
  want the environment path set it themselves);
- ``s3_options``: the storage options of that endpoint, as ``--storage-options`` / ``storage_options=``
  take them (``{"endpoint_url", "key", "secret"}``);
- ``s3``: an ``s3fs.S3FileSystem`` on it, for the tests' own uploads and checks.

Import them in a test module with ``from storage_fixtures import s3, s3_options, s3_server``.
"""

from __future__ import annotations

import logging
import os
import socket

import pytest

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def s3_options(s3_server):
    return {"endpoint_url": s3_server, "key": "testing", "secret": "testing"}


@pytest.fixture(scope="module")
def s3(s3_options):
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **s3_options)
