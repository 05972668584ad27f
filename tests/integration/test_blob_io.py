"""Blob streams pinned to an ETag, against Azurite: a change at open or mid-download is terminal."""

from __future__ import annotations

import os
import uuid

import pytest

from shared.errors import FormatError
from shared.storage.blob_io import BlobChangedError, open_blob

pytestmark = pytest.mark.azurite

MB = 1024 * 1024


@pytest.fixture
def container(azurite):
    from azure.storage.blob import BlobServiceClient

    # Small gets, so that a 6 MB blob takes several requests and a change can land between them.
    service = BlobServiceClient.from_connection_string(
        azurite.connection_string, max_single_get_size=MB, max_chunk_get_size=MB
    )
    client = service.get_container_client(f"blobio{uuid.uuid4().hex[:12]}")
    client.create_container()
    yield client
    client.delete_container()


def test_a_pinned_stream_reads_the_version_it_was_opened_on(container):
    data = os.urandom(6 * MB)
    etag = container.upload_blob("f", data).get_blob_properties().etag
    assert open_blob(container, "f", etag=etag, chunk_size=MB).read() == data
    assert open_blob(container, "f").read() == data


def test_a_change_before_opening_is_refused(container):
    etag = container.upload_blob("f", b"first").get_blob_properties().etag
    container.upload_blob("f", b"second", overwrite=True)
    with pytest.raises(BlobChangedError, match="overwritten after it was accepted"):
        open_blob(container, "f", etag=etag)
    assert open_blob(container, "f").read() == b"second"  # unpinned reads see the new version


def test_a_change_in_the_middle_of_a_download_is_refused(container):
    etag = container.upload_blob("f", os.urandom(6 * MB)).get_blob_properties().etag
    stream = open_blob(container, "f", etag=etag, chunk_size=MB)
    assert len(stream.read(2 * MB)) == 2 * MB
    container.upload_blob("f", os.urandom(6 * MB), overwrite=True)
    with pytest.raises(BlobChangedError) as info:
        stream.read()
    assert isinstance(info.value, FormatError)  # terminal: the worker does not retry it
