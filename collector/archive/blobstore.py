"""Azure Blob Storage I/O: atomic JSONL blobs from staged blocks, and ETag-guarded state."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient

from ..core.auth import CredentialFactory, credential_factory
from ..core.errors import StateConflictError
from ..core.settings import StorageTarget

BLOCK_SIZE = 2 * 1024 * 1024
"""Bytes buffered before a block is staged: memory per open blob stays below this."""
READ_SIZE = 1024 * 1024
"""Bytes of a blob read at once when its lines are indexed (each read is held two or three
times over on its way through the storage client)."""
JSONL_CONTENT = ContentSettings(content_type="application/x-ndjson; charset=utf-8")
JSON_CONTENT = ContentSettings(content_type="application/json; charset=utf-8")


class BlockBlobWriter:
    """Streams JSONL lines into one block blob that appears only when committed, and only if
    no blob of that name exists yet: a committed data blob is never replaced.

    Blocks get random IDs per writer, so two writers of the same blob never commit each
    other's blocks. The commit is conditional (``If-None-Match: *``), so storage itself
    refuses to replace a blob another attempt committed first, however late this one is
    (a run that stalled past its lease included); the writer then says so and changes nothing.
    """

    def __init__(self, blob: BlobClient, block_size: int = BLOCK_SIZE) -> None:
        self._blob = blob
        self._block_size = block_size
        self._prefix = uuid.uuid4().hex
        self._block_ids: list[str] = []
        self._buffer = bytearray()
        self._staging: asyncio.Task[Any] | None = None
        self._staging_bytes = 0
        self._failed: Exception | None = None
        """Why a block never reached storage: every later stage or commit fails with it."""
        self.lines = 0

    @property
    def name(self) -> str:
        """The blob's name in its container."""
        return self._blob.blob_name

    async def write_lines(self, lines: list[bytes]) -> None:
        """Append ``lines`` (UTF-8 JSON texts without newlines), staging a block when the
        buffer fills."""
        if not lines:
            return
        chunk = b"\n".join(lines) + b"\n"
        self._buffer += chunk
        self.lines += len(lines)
        if len(self._buffer) >= self._block_size:
            await self._stage()

    async def commit(self, metadata: dict[str, str]) -> dict[str, str] | None:
        """Stage what is buffered and commit the block list: the blob appears whole at once.

        Returns None when this writer created the blob, or the metadata of the blob that
        was already committed under this name (by an earlier attempt at the same window or
        by another run): that blob stays as it is.
        """
        await self.flush()  # every block is staged before the list that names them
        try:
            await self._blob.commit_block_list(
                [BlobBlock(block_id=i) for i in self._block_ids],
                content_settings=JSONL_CONTENT,
                metadata=metadata,
                if_none_match="*",
            )
        except HttpResponseError as exc:
            code = getattr(exc, "error_code", None)
            if exc.status_code in (409, 412) and code != "InvalidBlockList":
                # BlobAlreadyExists (409; 412 ConditionNotMet from some endpoints).
                properties = await self._blob.get_blob_properties()
                return dict(properties.metadata or {})
            if code != "InvalidBlockList":
                raise
            raise StateConflictError(
                f"{self.name} was committed by another run while this one wrote it"
            ) from exc
        return None

    @property
    def buffered(self) -> int:
        """Bytes held in memory: buffered, or in a block still on its way to storage."""
        return len(self._buffer) + self._staging_bytes

    async def flush(self) -> None:
        """Stage what is buffered now, even if less than a block, and wait until storage
        has it (frees the memory)."""
        if self._buffer:
            await self._stage()
        await self._staged()

    def stop_staging(self) -> list[asyncio.Task[Any]]:
        """Cancel the block on its way (the window was stopped or failed), without waiting;
        return its task to be awaited. Nothing is committed, so storage drops the staged
        blocks by itself."""
        task, self._staging, self._staging_bytes = self._staging, None, 0
        if task is None:
            return []
        task.cancel()
        self._failed = self._failed or RuntimeError(f"{self.name}: writing was aborted")
        return [task]

    async def _stage(self) -> None:
        """Start uploading the buffer as a block and return: the window reads its next page
        while the block travels (at most one block of a blob is on its way at a time)."""
        await self._staged()
        block_id = f"{self._prefix}{len(self._block_ids):08d}"
        data = bytes(self._buffer)
        self._buffer.clear()
        self._block_ids.append(block_id)
        self._staging_bytes = len(data)
        self._staging = asyncio.ensure_future(
            self._blob.stage_block(block_id, data, length=len(data))
        )

    async def _staged(self) -> None:
        """Wait for the block on its way; its failure is raised here, and again at every
        later stage or commit (the block list names it, so no commit may succeed)."""
        if self._failed is not None:
            raise self._failed
        if self._staging is not None:
            try:
                await self._staging
            except Exception as exc:
                self._failed = exc
                raise
            except BaseException:
                self._failed = RuntimeError(f"{self.name}: a block upload was cancelled")
                raise
            finally:
                self._staging, self._staging_bytes = None, 0


class BlobStore:
    """The collector's container: data blobs and small JSON state documents."""

    def __init__(self, container: ContainerClient, block_size: int = BLOCK_SIZE) -> None:
        self._container = container
        self._block_size = block_size

    async def ensure_container(self) -> None:
        """Create the container if it does not exist yet."""
        with suppress(ResourceExistsError):
            await self._container.create_container()

    def writer(self, name: str) -> BlockBlobWriter:
        """Return a writer that creates blob ``name`` when committed (unless it exists)."""
        return BlockBlobWriter(self._container.get_blob_client(name), self._block_size)

    async def read_json(self, name: str) -> tuple[Any, str | None]:
        """Return a JSON blob's document and ETag, or ``(None, None)`` when it does not exist."""
        try:
            downloader = await self._container.get_blob_client(name).download_blob()
        except ResourceNotFoundError:
            return None, None
        data = await downloader.readall()
        return json.loads(data), downloader.properties.etag

    async def write_json(self, name: str, document: Any, etag: str | None) -> str:
        """Write ``document`` only if the blob still has ``etag`` (or, with None, does not exist).

        Returns the new ETag; raises ``StateConflictError`` when another writer came first.
        """
        blob = self._container.get_blob_client(name)
        data = _json_bytes(document)
        # overwrite=False sends If-None-Match: * (create only).
        condition: dict[str, Any] = (
            {"overwrite": True, "etag": etag, "match_condition": MatchConditions.IfNotModified}
            if etag
            else {"overwrite": False}
        )
        try:
            result = await blob.upload_blob(data, content_settings=JSON_CONTENT, **condition)
        except (ResourceModifiedError, ResourceExistsError) as exc:
            raise StateConflictError(f"{name} was changed by another run") from exc
        return str(result["etag"])

    async def create_json(self, name: str, document: Any) -> bool:
        """Write a JSON document once: False (and nothing written) if ``name`` exists."""
        try:
            await self.write_json(name, document, None)
        except StateConflictError:
            return False
        return True

    async def put_json(self, name: str, document: Any) -> None:
        """Write a JSON document that is not data (``_``-prefixed), replacing any before."""
        blob = self._container.get_blob_client(name)
        await blob.upload_blob(_json_bytes(document), overwrite=True, content_settings=JSON_CONTENT)

    async def has_blobs(self, prefix: str) -> bool:
        """True when some blob's name starts with ``prefix``."""
        async for _ in self._container.list_blobs(name_starts_with=prefix, results_per_page=1):
            return True
        return False

    async def read_lines(self, name: str) -> AsyncIterator[bytes]:
        """Yield the lines of a JSONL blob (without newlines), one ranged read of
        ``READ_SIZE`` bytes at a time (a day's blob may be gigabytes)."""
        blob = self._container.get_blob_client(name)
        rest = b""
        offset, size = 0, 1
        while offset < size:
            downloader = await blob.download_blob(offset=offset, length=READ_SIZE)
            # Content-Range: bytes <first>-<last>/<size of the whole blob>
            size = int(str(downloader.properties.content_range).rsplit("/", 1)[-1])
            chunk = await downloader.readall()
            offset += len(chunk)
            lines = chunk.split(b"\n")
            lines[0] = rest + lines[0]  # the line the previous read cut
            rest = lines.pop()
            for line in lines:
                if line:
                    yield line
        if rest:
            yield rest

    async def list_with_metadata(self, prefix: str) -> dict[str, dict[str, str]]:
        """Return the blobs under ``prefix`` with their metadata."""
        return {
            b.name: dict(b.metadata or {})
            async for b in self._container.list_blobs(name_starts_with=prefix, include=["metadata"])
        }


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")


@asynccontextmanager
async def open_store(
    target: StorageTarget, container: str, credentials: CredentialFactory | None = None
) -> AsyncIterator[BlobStore]:
    """Open the container described by ``target``, closing clients on exit (``credentials``
    default to the identity ``target`` names)."""
    credentials = credentials or credential_factory(target.client_id)
    if target.connection_string:
        service = BlobServiceClient.from_connection_string(target.connection_string)
        async with service:
            yield BlobStore(service.get_container_client(container))
        return
    assert target.blob_service_uri is not None
    async with (
        credentials() as credential,
        BlobServiceClient(target.blob_service_uri, credential=credential) as service,
    ):
        yield BlobStore(service.get_container_client(container))
