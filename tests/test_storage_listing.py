"""The driver lists an object store as a stream: on S3 one ListObjectsV2 page (1,000 keys) at a time, on other
stores one folder at a time; the listing never runs more than a page ahead of its consumer and its memory
does not grow with the number of keys. Synthetic listings (tests/listing_fakes.py): no store needed."""

from __future__ import annotations

import tracemalloc

import pytest
from fsspec.spec import AbstractFileSystem
from listing_fakes import FakeS3

from gradcam import storage


def test_an_s3_listing_is_consumed_one_page_at_a_time(monkeypatch):
    fake = FakeS3(100_000)
    monkeypatch.setattr(storage, "filesystem", lambda url, so=None: (fake, "bucket/in"))
    tracemalloc.start()
    try:
        seen = 0
        for it in storage.list_items("s3://bucket/in", ["s3://bucket/out"], (".jpg",)):
            seen += 1
            assert fake.produced - seen < storage.PAGE  # never more than one page ahead of the consumer
            if seen == 1:
                first = it
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seen == fake.produced == 100_000
    assert (first.path, first.stem) == ("s3://bucket/in/0000/img_00000000.jpg", "0000/img_00000000")
    assert first.stamp == {"path": first.path, "size": 120_000, "etag": "0" * 32}
    # One page of entries is ~1.5 MB; 100,000 keys held at once would be ~150 MB. Measured peak: 1.2 MB.
    assert peak < 8e6, f"listing 100,000 keys peaked at {peak / 1e6:.1f} MB"


class FakeTree(AbstractFileSystem):
    """100 folders of 1,000 files; counts ``ls`` calls (one per folder listed)."""

    protocol = "faketree"

    def __init__(self):
        super().__init__(skip_instance_cache=True)
        self.calls = 0

    def ls(self, path, detail=True, **kwargs):
        self.calls += 1
        path = path.rstrip("/")
        if path == "root":
            return [{"name": f"root/d{d:03d}", "type": "directory", "size": 0} for d in range(100)]
        d = path.rsplit("/", 1)[-1]
        return [
            {"name": f"{path}/f{i:04d}.png", "type": "file", "size": i + 1, "etag": f"{d}-{i}"}
            for i in range(1000)
        ]


def test_other_stores_are_listed_one_folder_at_a_time(monkeypatch):
    fake = FakeTree()
    monkeypatch.setattr(storage, "filesystem", lambda url, so=None: (fake, "root"))
    items = storage.list_items("gs://bucket/root", (), (".png",))
    first = next(items)
    assert fake.calls == 2  # the top folder and the first subfolder, nothing more
    assert (first.path, first.stem, first.stamp) == (
        "gs://bucket/root/d000/f0000.png",
        "d000/f0000",
        {"path": "gs://bucket/root/d000/f0000.png", "size": 1, "etag": "d000-0"},
    )
    assert sum(1 for _ in items) == 100 * 1000 - 1 and fake.calls == 101


@pytest.mark.parametrize(
    "key, listed",
    [("in/a.jpg", True), ("in/.hidden/a.jpg", False), ("in/sub/.a.jpg", False), ("in/a.txt", False)],
)
def test_a_listing_skips_hidden_names_other_extensions_and_the_output_prefix(monkeypatch, key, listed):
    class One(FakeTree):
        def ls(self, path, detail=True, **kwargs):
            folder = path.rstrip("/")
            names = [key, "in/out/x.jpg"]
            inside = {n.split("/")[len(folder.split("/"))] for n in names if n.startswith(folder + "/")}
            return [
                {
                    "name": f"{folder}/{x}",
                    "type": "file" if x.endswith((".jpg", ".txt")) else "directory",
                    "size": 1,
                    "etag": "e",
                }
                for x in sorted(inside)
            ]

    monkeypatch.setattr(storage, "filesystem", lambda url, so=None: (One(), "in"))
    got = [it.path for it in storage.list_items("gs://b/in", ["gs://b/in/out"], (".jpg",))]
    assert got == (["gs://b/" + key] if listed else [])
