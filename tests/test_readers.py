"""Reading objects for the embed stage: every store is capped, every S3 endpoint is its own."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from pipeline import plugins
from pipeline.core.objects import ObjectInfo
from pipeline.embedding.readers import ObjectReader
from pipeline.errors import ItemFailure
from pipeline.sources.base import Source, SourceOptions
from tests.conftest import free_port, wait_for_port

CAP = 1000


@pytest.fixture
def second_s3(s3):
    """Another S3 endpoint with its own objects: moto's server in a process of its own (two moto
    servers in one process would share their buckets)."""
    import boto3

    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        endpoint = f"http://127.0.0.1:{port}"
        yield endpoint, boto3.client("s3", endpoint_url=endpoint)
    finally:
        process.terminate()
        process.wait(10)


def test_each_s3_endpoint_is_read_through_its_own_client(s3, s3_endpoint, second_s3):
    other_endpoint, other = second_s3
    s3.create_bucket(Bucket="first")
    s3.put_object(Bucket="first", Key="a.jpg", Body=b"first store")
    other.create_bucket(Bucket="second")
    other.put_object(Bucket="second", Key="b.jpg", Body=b"second store")
    # One thread, two readers, two endpoints: the second must not reuse the first's client.
    assert ObjectReader(s3_endpoint_url=s3_endpoint).read("s3://first/a.jpg") == b"first store"
    assert ObjectReader(s3_endpoint_url=other_endpoint).read("s3://second/b.jpg") == b"second store"
    assert ObjectReader(s3_endpoint_url=s3_endpoint).read("s3://first/a.jpg") == b"first store"


def test_s3_objects_over_the_cap_fail_with_a_reason(s3, s3_endpoint):
    s3.create_bucket(Bucket="capped")
    s3.put_object(Bucket="capped", Key="big.jpg", Body=b"x" * (CAP * 5))
    s3.put_object(Bucket="capped", Key="at-cap.jpg", Body=b"y" * CAP)
    reader = ObjectReader(s3_endpoint_url=s3_endpoint, max_bytes=CAP)
    with pytest.raises(ItemFailure, match=f"larger than {CAP} bytes") as failure:
        reader.read("s3://capped/big.jpg")
    assert failure.value.permanent
    assert reader.read("s3://capped/at-cap.jpg") == b"y" * CAP


def test_gcs_objects_over_the_cap_fail_with_a_reason(gcs):
    bucket = gcs.client().create_bucket("capped")
    bucket.blob("big.jpg").upload_from_string(b"x" * (CAP * 5))
    bucket.blob("at-cap.jpg").upload_from_string(b"y" * CAP)
    bucket.blob("empty.jpg").upload_from_string(b"")
    reader = ObjectReader(max_bytes=CAP)
    with pytest.raises(ItemFailure, match=f"larger than {CAP} bytes"):
        reader.read("gs://capped/big.jpg")
    assert reader.read("gs://capped/at-cap.jpg") == b"y" * CAP
    assert reader.read("gs://capped/empty.jpg") == b""  # a range on nothing is still nothing
    with pytest.raises(ItemFailure, match="no longer exists"):
        reader.read("gs://capped/gone.jpg")


def test_a_listed_size_over_the_cap_fails_before_any_request(tmp_path):
    # The object does not even exist: the listed size alone decides.
    with pytest.raises(ItemFailure, match=f"larger than {CAP} bytes"):
        ObjectReader(max_bytes=CAP).read("s3://nowhere/huge.jpg", size=CAP + 1)
    (tmp_path / "small.jpg").write_bytes(b"z" * 10)
    assert ObjectReader(max_bytes=CAP).read(str(tmp_path / "small.jpg"), size=10) == b"z" * 10


def test_local_files_over_the_cap_fail_with_a_reason(tmp_path):
    (tmp_path / "big.jpg").write_bytes(b"x" * (CAP + 1))
    with pytest.raises(ItemFailure, match=f"larger than {CAP} bytes"):
        ObjectReader(max_bytes=CAP).read(str(tmp_path / "big.jpg"))


class MemorySource(Source):
    """A source as a third-party package would ship it: mem://NAME objects held in memory."""

    scheme = "mem"
    objects: ClassVar[dict[str, bytes]] = {}

    def root(self) -> str:
        return "mem://"

    def list(self) -> Iterator[ObjectInfo]:
        for name, data in sorted(self.objects.items()):
            yield ObjectInfo(f"mem://{name}", self.scheme, None, name, name, size=len(data))

    def read(self, locator: str, *, max_bytes: int, size: int | None = None) -> bytes:
        name = locator.removeprefix("mem://")
        if name not in self.objects:
            raise FileNotFoundError(locator)
        return self.objects[name][: max_bytes + 1]


@pytest.fixture
def memory_source_installed(tmp_path, monkeypatch):
    """MemorySource installed the way a plug-in package is: a distribution with an entry point."""
    dist = tmp_path / "site" / "imgvec_mem-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: imgvec-mem\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[imgvec.sources]\nmem = tests.test_readers:MemorySource\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(MemorySource, "objects", {"a.jpg": b"aaa", "b.png": b"bbbb"})
    plugins._registry.cache_clear()  # the registry reads entry points once per process
    yield
    plugins._registry.cache_clear()


def test_a_source_plug_in_reads_its_locators_with_the_shared_cap(memory_source_installed):
    reader = ObjectReader(max_bytes=3)
    assert reader.read("mem://a.jpg") == b"aaa"
    with pytest.raises(ItemFailure, match="larger than 3 bytes") as too_large:
        reader.read("mem://b.png")
    assert too_large.value.permanent
    with pytest.raises(ItemFailure, match="no longer exists") as gone:
        reader.read("mem://gone.jpg")
    assert gone.value.permanent
    source = plugins.source_class_for("mem://")("mem://", SourceOptions())
    assert [obj.locator for obj in source.list()] == ["mem://a.jpg", "mem://b.png"]
