"""The S3 server the tests and the dev stack run is the S3 the loader needs.

Checked through pyarrow's S3FileSystem, the client pyiceberg's PyArrowFileIO uses (path-style,
SigV4), and through a raw signed client where pyarrow hides the answer (ETags, status codes).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import uuid
from xml.etree import ElementTree

import httpx
import pytest
from pyarrow import fs
from pyiceberg.io.pyarrow import PyArrowFileIO
from services_s3 import WAREHOUSE_BUCKET

from devstack.s3 import S3Client, S3Server

WRONG_SECRET = "not-the-secret"  # noqa: S105 - a deliberately wrong credential


def xml(answer: httpx.Response) -> ElementTree.Element:
    """The answer's XML with namespaces dropped (S3 servers differ in declaring xmlns)."""
    root = ElementTree.fromstring(answer.content)  # noqa: S314 - our own server on loopback
    for element in root.iter():
        element.tag = element.tag.rsplit("}", 1)[-1]
    return root


def xml_keys(answer: httpx.Response) -> list[str]:
    return [k.text or "" for k in xml(answer).iter("Key")]


def arrow_fs(server: S3Server, *, secret_key: str | None = None) -> fs.S3FileSystem:
    return fs.S3FileSystem(
        access_key=server.access_key,
        secret_key=secret_key or server.secret_key,
        endpoint_override=f"127.0.0.1:{server.port}",
        scheme="http",
        region=server.region,
        force_virtual_addressing=False,
        allow_bucket_creation=True,
        allow_bucket_deletion=True,
    )


@pytest.fixture
def prefix() -> str:
    return f"{WAREHOUSE_BUCKET}/t-{uuid.uuid4().hex[:8]}"


def test_write_read_list_delete(s3_server: S3Server, prefix: str) -> None:
    s3 = arrow_fs(s3_server)
    for name, body in {"a/one.parquet": b"1", "a/two.parquet": b"22", "b/three.json": b"333"}.items():
        with s3.open_output_stream(f"{prefix}/{name}") as out:
            out.write(body)

    with s3.open_input_stream(f"{prefix}/a/two.parquet") as stream:
        assert stream.read() == b"22"
    files = s3.get_file_info(fs.FileSelector(prefix, recursive=True))
    assert {(f.path, f.size) for f in files if f.type == fs.FileType.File} == {
        (f"{prefix}/a/one.parquet", 1),
        (f"{prefix}/a/two.parquet", 2),
        (f"{prefix}/b/three.json", 3),
    }

    s3.delete_file(f"{prefix}/a/one.parquet")
    assert s3.get_file_info(f"{prefix}/a/one.parquet").type == fs.FileType.NotFound
    s3.delete_dir_contents(f"{prefix}/a")  # DeleteObjects (one request for the batch)
    assert s3.get_file_info(f"{prefix}/a/two.parquet").type == fs.FileType.NotFound
    assert s3.get_file_info(f"{prefix}/b/three.json").size == 3


def test_large_file_goes_up_in_parts(s3_server: S3Server, prefix: str) -> None:
    body = os.urandom(12 * 1024 * 1024)  # above pyarrow's multipart threshold
    with arrow_fs(s3_server).open_output_stream(f"{prefix}/big.bin") as out:
        out.write(body)

    with arrow_fs(s3_server).open_input_stream(f"{prefix}/big.bin") as stream:
        assert stream.read() == body
    head = s3_server.client().request("HEAD", f"/{prefix}/big.bin")
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == len(body)
    # A multipart object's ETag is md5(part md5s)-<part count>; a single PUT's is md5(body).
    etag = head.headers["etag"].strip('"')
    found = re.fullmatch(r"([0-9a-f]{32})-(\d+)", etag)
    assert found is not None, f"not a multipart ETag: {etag}"
    assert int(found.group(2)) >= 2
    assert found.group(1) != hashlib.md5(body).hexdigest()  # noqa: S324 - S3's ETag algorithm


def test_list_objects_v2_pages(s3_server: S3Server, prefix: str) -> None:
    client = s3_server.client()
    bucket, key_prefix = prefix.split("/", 1)
    for index in range(5):
        assert client.request("PUT", f"/{prefix}/k{index}", body=b"x").status_code == 200

    keys: list[str] = []
    query = {"list-type": "2", "prefix": f"{key_prefix}/", "max-keys": "2"}
    pages = 0
    while True:
        answer = client.request("GET", f"/{bucket}", query=query)
        assert answer.status_code == 200, answer.text
        listing = xml(answer)
        keys += xml_keys(answer)
        pages += 1
        token = listing.findtext("NextContinuationToken")
        if listing.findtext("IsTruncated") != "true" or token is None:
            break
        query = {**query, "continuation-token": token}
    assert keys == [f"{key_prefix}/k{i}" for i in range(5)]
    assert pages == 3


def test_delete_objects_in_one_request(s3_server: S3Server, prefix: str) -> None:
    client = s3_server.client()
    bucket, key_prefix = prefix.split("/", 1)
    for name in ("x", "y"):
        client.request("PUT", f"/{prefix}/{name}", body=b"1")
    request = (
        "<Delete><Quiet>false</Quiet>"
        f"<Object><Key>{key_prefix}/x</Key></Object><Object><Key>{key_prefix}/y</Key></Object></Delete>"
    ).encode()
    checksum = base64.b64encode(hashlib.md5(request).digest()).decode()  # noqa: S324 - required by S3
    answer = client.request(
        "POST", f"/{bucket}", query={"delete": ""}, body=request, headers={"Content-MD5": checksum}
    )
    assert answer.status_code == 200, answer.text
    assert sorted(xml_keys(answer)) == [f"{key_prefix}/x", f"{key_prefix}/y"]
    assert client.request("HEAD", f"/{prefix}/x").status_code == 404


def test_conditional_put_and_get(s3_server: S3Server, prefix: str) -> None:
    client = s3_server.client()
    key = f"/{prefix}/metadata.json"
    created = client.request("PUT", key, body=b"v1", headers={"If-None-Match": "*"})
    assert created.status_code == 200
    assert client.request("PUT", key, body=b"v2", headers={"If-None-Match": "*"}).status_code == 412
    etag = created.headers["etag"]
    assert client.request("GET", key, headers={"If-None-Match": etag}).status_code == 304
    assert client.request("PUT", key, body=b"v3", headers={"If-Match": '"0"'}).status_code == 412
    assert client.request("PUT", key, body=b"v3", headers={"If-Match": etag}).status_code == 200
    assert client.request("GET", key).content == b"v3"


def test_missing_bucket_is_an_error(s3_server: S3Server) -> None:
    with pytest.raises(OSError, match="NO_SUCH_BUCKET"):
        arrow_fs(s3_server).get_file_info(fs.FileSelector("no-such-bucket", recursive=True))
    answer = s3_server.client().request("GET", "/no-such-bucket", query={"list-type": "2"})
    assert answer.status_code == 404
    assert "NoSuchBucket" in answer.text


def test_wrong_credentials_are_refused(s3_server: S3Server, prefix: str) -> None:
    s3 = arrow_fs(s3_server)
    with s3.open_output_stream(f"{prefix}/secret.txt") as out:
        out.write(b"s")

    with pytest.raises(OSError, match="ACCESS_DENIED"):
        arrow_fs(s3_server, secret_key=WRONG_SECRET).get_file_info(f"{prefix}/secret.txt")
    wrong_secret = S3Client(s3_server.endpoint, s3_server.access_key, WRONG_SECRET)
    answer = wrong_secret.request("GET", f"/{prefix}/secret.txt")
    assert (answer.status_code, "SignatureDoesNotMatch" in answer.text) == (403, True)
    unknown_key = S3Client(s3_server.endpoint, "nobody", s3_server.secret_key)
    answer = unknown_key.request("GET", f"/{prefix}/secret.txt")
    assert (answer.status_code, "InvalidAccessKeyId" in answer.text) == (403, True)
    anonymous = httpx.get(f"{s3_server.endpoint}/{prefix}/secret.txt")
    assert (anonymous.status_code, "AccessDenied" in anonymous.text) == (403, True)


def test_pyiceberg_fileio_reaches_the_server(s3_server: S3Server, prefix: str) -> None:
    io = PyArrowFileIO(s3_server.fileio_properties())
    location = f"s3://{prefix}/metadata/00000-x.metadata.json"
    with io.new_output(location).create() as out:
        out.write(b'{"format-version": 2}')

    assert io.new_input(location).exists()
    with io.new_input(location).open() as stream:
        assert stream.read() == b'{"format-version": 2}'
    io.delete(location)
    assert not io.new_input(location).exists()


def test_restart_keeps_buckets_and_objects(s3_server_restartable: S3Server) -> None:
    server = s3_server_restartable
    server.create_bucket("kept")
    with arrow_fs(server).open_output_stream("kept/a/b.parquet") as out:
        out.write(b"before restart")
    port = server.port

    server.restart()

    assert server.port == port
    with arrow_fs(server).open_input_stream("kept/a/b.parquet") as stream:
        assert stream.read() == b"before restart"
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.endpoint}/health")
