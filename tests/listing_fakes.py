"""Synthetic object-store listings for the listing tests and benchmarks/scale_cost_model.py: no store, no network.

:class:`FakeS3` has the part of s3fs's interface that :func:`gradcam.storage.iter_files` uses for S3
(``split_path``, ``info``, the ``_iterdir`` async generator of ListObjectsV2 entries, ``loop``) and counts the
entries it has produced, so a test can tell how far ahead of its consumer the listing ran.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Dict, Tuple


def entry(bucket: str, prefix: str, i: int) -> Dict[str, Any]:
    """One ListObjectsV2 entry as s3fs yields it (1,000 keys per folder, ~120 kB photos, a unique ETag)."""
    key = f"{bucket}/{prefix}{i // 1000:04d}/img_{i:08d}.jpg"
    size = 120_000 + i % 997
    return {
        "Key": key,
        "name": key,
        "Size": size,
        "size": size,
        "ETag": f'"{i:032x}"',
        "type": "file",
        "LastModified": "2026-12-06T00:00:00Z",
        "StorageClass": "STANDARD",
    }


class FakeS3:
    """``n`` synthetic keys under ``bucket/prefix``, listed lazily like s3fs's ``_iterdir``."""

    def __init__(self, n: int):
        import fsspec.asyn

        self.n, self.produced = n, 0
        self.loop = fsspec.asyn.get_loop()

    def split_path(self, path: str) -> Tuple[str, str, None]:
        bucket, _, key = path.partition("/")
        return bucket, key, None

    def info(self, path: str) -> Dict[str, Any]:
        raise FileNotFoundError(path)  # a prefix, not one object

    async def _iterdir(self, bucket: str, delimiter: str = "", prefix: str = "") -> AsyncIterator[Dict]:
        for i in range(self.n):
            self.produced += 1
            yield entry(bucket, prefix, i)
