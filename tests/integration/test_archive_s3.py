"""The local archive as IRSA's public S3 bucket, read with the real clients: s3fs and boto3."""

import numpy as np
import pytest
from astropy.io import fits

s3fs = pytest.importorskip("s3fs")
from botocore.exceptions import ClientError  # noqa: E402  (botocore comes with s3fs)

from glue_spherex.local_archive.files import QR2_FRAME_BYTES  # noqa: E402
from glue_spherex.local_archive.s3 import BUCKET  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def _client(archive):
    boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (.ci/run installs the "
                                "release matching s3fs's botocore)")
    from botocore import UNSIGNED
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=archive.url, region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))


def _fs(archive):
    return s3fs.S3FileSystem(anon=True, client_kwargs={"endpoint_url": archive.url},
                             skip_instance_cache=True)


def _ibe(archive, key, start, stop):
    import requests

    r = requests.get(f"{archive.url}/ibe/data/spherex/{key}",
                     headers={"Range": f"bytes={start}-{stop - 1}"}, timeout=60)
    assert r.status_code == 206
    return r.content


@pytest.mark.slow
def test_boto3_lists_heads_and_reads_ranges_like_the_ibe_files(archive):
    client = _client(archive)
    key = archive.catalog.keys[0]
    directory = key.rsplit("/", 1)[0] + "/"
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=directory)
    keys = [o["Key"] for o in listing["Contents"]]
    assert keys == sorted(k for k in archive.catalog.keys if k.startswith(directory))
    head = client.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == QR2_FRAME_BYTES == listing["Contents"][0]["Size"]
    assert head["AcceptRanges"] == "bytes" and head["ETag"] == listing["Contents"][0]["ETag"]
    part = client.get_object(Bucket=BUCKET, Key=key, Range="bytes=100000-100999")
    assert part["ContentRange"] == f"bytes 100000-100999/{QR2_FRAME_BYTES}"
    assert part["Body"].read() == _ibe(archive, key, 100000, 101000)


@pytest.mark.slow
def test_boto3_pages_through_a_listing_with_delimiters(archive):
    client = _client(archive)
    top = client.list_objects_v2(Bucket=BUCKET, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == sorted(
        {k.split("/", 1)[0] + "/" for k in archive.catalog.keys})
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix="qr2/", PaginationConfig={"PageSize": 700})
    seen = [o["Key"] for page in pages for o in page.get("Contents", [])]
    expected = sorted(k for k in archive.catalog.keys if k.startswith("qr2/"))
    assert seen == expected and len(seen) > 1400       # several pages, none repeated


def test_missing_key_and_bucket_are_s3_errors(archive):
    client = _client(archive)
    with pytest.raises(ClientError) as err:
        client.get_object(Bucket=BUCKET, Key="qr2/level2/nothing.fits")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as err:
        client.list_objects_v2(Bucket="another-bucket")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404  # only ours exists
    with pytest.raises(FileNotFoundError):
        _fs(archive).info(f"{BUCKET}/qr2/level2/nothing.fits")


@pytest.mark.slow
def test_astropy_reads_a_section_over_s3fs_without_the_whole_file(archive):
    key = archive.catalog.keys[1]
    fs = _fs(archive)
    assert fs.info(f"{BUCKET}/{key}")["size"] == QR2_FRAME_BYTES
    archive.clear_log()
    with fs.open(f"{BUCKET}/{key}", "rb", block_size=256 * 1024) as f, \
            fits.open(f, lazy_load_hdus=True) as hdul:
        cut = hdul["IMAGE"].section[1000:1010, 500:520]
        offset = hdul["IMAGE"]._data_offset
    row = _ibe(archive, key, offset + 4 * (1000 * 2040 + 500), offset + 4 * (1000 * 2040 + 520))
    assert np.array_equal(cut[0], np.frombuffer(row, ">f4"))
    sent = sum(r.bytes_sent for r in archive.log if r.path.startswith(f"/{BUCKET}"))
    assert 0 < sent < 0.05 * QR2_FRAME_BYTES


@pytest.mark.slow
def test_fault_flags_apply_to_the_bucket(make_archive):
    archive = make_archive(p_500=1.0)
    with pytest.raises(OSError):  # s3fs retries, then gives up
        _fs(archive).info(f"{BUCKET}/{archive.catalog.keys[0]}")
    assert any(r.fault == "500" and r.path.startswith(f"/{BUCKET}") for r in archive.log)
