"""S3-compatible storage: the only module that talks to S3 (boto3).

Uploads are multipart: each part is sent from the backup's local file as soon
as it is written (a bounded number in flight), so memory does not grow with the
backup, nor with the part size. Each part is retried with
exponential backoff; a failed upload is aborted. The check of what was
stored, and Test connection, are in :mod:`app.backups.checks`, through the
functions here.
Every call gets its client from :func:`client`, which runs the SSRF check on
the endpoint each time (SECURITY.md 13, at use).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from app import names, outbound

log = logging.getLogger("slipway.storage")
# S3's smallest part but the last.
MIN_PART = 5 << 20
# botocore's region redirect (same host, re-signed for the region S3 names); no other.
MAX_REDIRECTS = 1


class StorageError(Exception):
    """An S3 request failed; the message says which step and why, without secrets."""


@dataclass(frozen=True)
class S3Target:
    endpoint_url: str
    region: str
    bucket: str
    prefix: str
    access_key_id: str
    secret_access_key: str
    path_style: bool = False
    timeout: float = 30.0

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def __repr__(self) -> str:  # never show the secret in a traceback or log
        return f"S3Target({self.endpoint_url!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"


def check_at_use(target: S3Target, allowed_hosts: tuple[str, ...]) -> None:
    """SSRF guard, again at use: the endpoint's host must not resolve internally."""
    try:
        outbound.check_host(names.url_host(target.endpoint_url), allowed_hosts)
    except outbound.HostRefused as exc:
        raise StorageError(str(exc)) from None


_session_lock = threading.Lock()
_session: Any = None  # a boto3 Session, made at first use


def client(target: S3Target):
    """An S3 client for ``target``; every S3 call of Slipway gets its client here.

    So this is where the SSRF check runs at use (SECURITY.md 13): an endpoint whose
    host resolves internally and is not allow-listed (``OUTBOUND_ALLOWED_HOSTS``)
    raises :class:`StorageError` before anything is sent. The client checks again the
    host of every request it sends (:func:`_check_request_host`) and follows no
    redirect but botocore's one region redirect (:func:`_refuse_redirects`).
    """
    # Per use, not cached: DNS can turn internal at any time, and one lookup is cheap next
    # to an S3 request (a multipart upload is one use: it takes its client once).
    allowed = outbound.allowed_hosts()
    check_at_use(target, allowed)
    return _client(target, allowed)


def _check_request_host(allowed: tuple[str, ...]) -> Callable[..., None]:
    """A ``before-send`` hook: the host each request really goes to passes the SSRF check.

    A use takes its client once, and a multipart upload can send parts for hours while
    DNS turns the name internal; and the URL is botocore's to build (addressing style,
    region redirects), so the host checked is the one in the request. It runs in the
    upload's part threads too, so the allow-list is bound here, not read from the app.
    """

    def check(request, **kwargs) -> None:
        try:
            outbound.check_host((urlsplit(request.url).hostname or "").lower(), allowed)
        except outbound.HostRefused as exc:
            raise StorageError(str(exc)) from None

    return check


def _refuse_redirects(response, request_dict, **kwargs) -> None:
    """A ``needs-retry`` hook, run before botocore's: the one redirect S3 may answer is
    followed once, and no other.

    botocore never goes to a ``Location``; its region redirector re-signs the request for
    the region the answer names (``x-amz-bucket-region``, same host), once per request.
    When the answer names none it asks HEAD on the bucket, whose own redirect asks again:
    an endpoint answering 307 forever got ~80 requests and a ``RecursionError``. So a
    3xx without a region, or a second one, ends the request here with a plain reason.
    """
    http = response[0] if response is not None else None
    if http is None or not 300 <= http.status_code < 400:
        return None
    headers = response[1].get("ResponseMetadata", {}).get("HTTPHeaders", {})
    redirected = request_dict.get("context", {}).get("s3_redirect", {}).get("redirected")
    if headers.get("x-amz-bucket-region") and not redirected:
        return None  # botocore re-signs for that region, to the same host (checked again)
    raise StorageError(
        f"the S3 endpoint redirected the request (HTTP {http.status_code}) "
        f"{'again after one region redirect' if redirected else 'without naming a region'}; "
        f"Slipway follows at most {MAX_REDIRECTS} redirect, to the bucket's region: "
        "check the endpoint URL and the region"
    )


@functools.lru_cache(maxsize=32)
def _client(target: S3Target, allowed: tuple[str, ...]):
    """Cached per target and allow-list: clients are thread-safe, and each new one would
    load and parse botocore's S3 model again (about 15 MB)."""
    import boto3
    from botocore.config import Config

    global _session
    config = Config(
        region_name=target.region or "us-east-1",
        s3={"addressing_style": "path" if target.path_style else "auto"},
        retries={"max_attempts": 2, "mode": "standard"},
        # Parts carry Content-MD5 (and the whole is checked by its ETag): no CRC pass.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=min(target.timeout, 10),
        read_timeout=target.timeout,
        signature_version="s3v4",
    )
    with _session_lock:  # boto3 sessions are not thread-safe; their clients are
        _session = _session or boto3.session.Session()
        s3 = _session.client(
            "s3",
            endpoint_url=target.endpoint_url,
            aws_access_key_id=target.access_key_id,
            aws_secret_access_key=target.secret_access_key,
            config=config,
        )
    s3.meta.events.register_first("needs-retry.s3", _refuse_redirects)
    s3.meta.events.register_first("before-send.s3", _check_request_host(allowed))
    return s3


def describe(exc: Exception) -> str:
    """A plain reason: the S3 error code and message, or the connection problem."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{code}: {err.get('Message') or 'no message'}"
    if isinstance(exc, BotoCoreError | StorageError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def with_retries(what: str, call: Callable[[], Any], retries: int, base_delay: float) -> Any:
    """Run ``call``, retrying ``retries`` more times with exponential backoff."""
    from botocore.exceptions import BotoCoreError, ClientError

    for attempt in range(retries + 1):
        try:
            return call()
        except (ClientError, BotoCoreError, OSError) as exc:
            if attempt == retries:
                raise StorageError(
                    f"{what} failed after {retries + 1} attempts: {describe(exc)}"
                ) from None
            delay = base_delay * (2**attempt)
            log.warning("%s failed (%s); retrying in %.1f s", what, describe(exc), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


class FileSlice(io.RawIOBase):
    """A seekable window on a file: one part of a multipart upload, read from disk.

    The backup writes its local file first; each part is sent from that file, so
    memory stays the same whatever the part size (botocore may read a part twice,
    for signing and on a retry, hence seekable).
    """

    def __init__(self, path: str, offset: int, length: int):
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._start, self._length, self._pos = offset, length, 0
        self._file.seek(offset)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        remaining = self._length - self._pos
        if size is None or size < 0 or size > remaining:
            size = remaining
        data = self._file.read(size)
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(base + offset, self._length))
        self._file.seek(self._start + self._pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._file.close()
        super().close()


class MultipartUpload:
    """One multipart upload fed part by part from a file; at most ``threads`` in flight."""

    def __init__(
        self, target: S3Target, key: str, *, threads: int = 3, retries: int = 4,
        base_delay: float = 1.0,
    ) -> None:  # fmt: skip
        self.target, self.key = target, key
        self.s3 = client(target)
        self.retries, self.base_delay = retries, base_delay
        self.upload_id: str | None = None
        self.part_md5s: list[bytes] = []
        self.size = 0
        self._parts: list[Future] = []
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3-part")
        self._slots = threading.BoundedSemaphore(threads)

    def start(self) -> str:
        created = with_retries(
            "starting the multipart upload",
            lambda: self.s3.create_multipart_upload(Bucket=self.target.bucket, Key=self.key),
            self.retries, self.base_delay,
        )  # fmt: skip
        self.upload_id = created["UploadId"]
        return self.upload_id

    def add(self, path: str, offset: int, length: int, md5: bytes) -> None:
        """Queue the part ``path[offset:offset+length]`` whose MD5 is ``md5``.

        All parts but the last must be at least 5 MiB. Blocks while all slots are busy;
        raises :class:`StorageError` as soon as an earlier part has failed for good.
        """
        number = len(self.part_md5s) + 1
        self.part_md5s.append(md5)
        self.size += length
        for done in [f for f in self._parts if f.done()]:
            done.result()
        self._slots.acquire()
        future = self._pool.submit(self._upload_part, number, path, offset, length, md5)
        future.add_done_callback(lambda _f: self._slots.release())
        self._parts.append(future)

    def _upload_part(self, number: int, path: str, offset: int, length: int, md5: bytes):
        def send() -> dict:
            with FileSlice(path, offset, length) as body:
                # Content-MD5: S3 checks each part on arrival; the ETag check covers the whole.
                return self.s3.upload_part(
                    Bucket=self.target.bucket, Key=self.key, UploadId=self.upload_id,
                    PartNumber=number, Body=body, ContentLength=length,
                    ContentMD5=base64.b64encode(md5).decode(),
                )  # fmt: skip

        response = with_retries(f"uploading part {number}", send, self.retries, self.base_delay)
        return {"PartNumber": number, "ETag": response["ETag"]}

    def complete(self) -> str:
        """Wait for the parts, complete, and return the ETag S3 reports."""
        parts = [f.result() for f in self._parts]
        self._pool.shutdown()
        done = with_retries(
            "completing the multipart upload",
            lambda: self.s3.complete_multipart_upload(
                Bucket=self.target.bucket, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            ),
            self.retries, self.base_delay,
        )  # fmt: skip
        return done["ETag"]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def abort(target: S3Target, key: str, upload_id: str) -> None:
    """Abort a multipart upload so its parts stop taking space."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = client(target)
    try:
        s3.abort_multipart_upload(Bucket=target.bucket, Key=key, UploadId=upload_id)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
            raise StorageError(f"aborting the upload failed: {describe(exc)}") from None
    except BotoCoreError as exc:
        raise StorageError(f"aborting the upload failed: {describe(exc)}") from None


def head(
    target: S3Target, key: str, *, retries: int = 0, base_delay: float = 1.0
) -> tuple[int, str]:
    """(size, ETag) of an object, retried like the upload."""
    found = head_object(target, key, retries=retries, base_delay=base_delay)
    return found["ContentLength"], found["ETag"]


def head_object(target: S3Target, key: str, *, retries: int = 0, base_delay: float = 1.0) -> dict:
    """HEAD on an object: its size, ETag and any S3 checksums, retried like the upload."""
    s3 = client(target)
    # ChecksumMode: a server that keeps S3 checksums returns them (others ignore it).
    return with_retries("reading the object's metadata",
                        lambda: s3.head_object(Bucket=target.bucket, Key=key,
                                               ChecksumMode="ENABLED"),
                        retries, base_delay)  # fmt: skip


def read_range(target: S3Target, key: str, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` (inclusive) of an object: one ranged GET."""
    body = client(target).get_object(Bucket=target.bucket, Key=key,
                                     Range=f"bytes={start}-{end}")["Body"]  # fmt: skip
    try:
        return body.read()
    finally:
        body.close()


def iter_object(target: S3Target, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The object's bytes in chunks (downloads stream through Slipway).

    The object is opened here, before the first chunk: a failure raises to the
    caller, which can still answer with an error instead of a broken stream.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        body = client(target).get_object(Bucket=target.bucket, Key=key)["Body"]
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"downloading the object failed: {describe(exc)}") from None
    return _chunks(body, chunk_size)


def _chunks(body, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()


def download(target: S3Target, key: str, out: BinaryIO) -> str:
    """Write the object to ``out``; returns its SHA-256."""
    digest = hashlib.sha256()
    for chunk in iter_object(target, key):
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def delete(target: S3Target, key: str, *, retries: int = 0, base_delay: float = 1.0) -> None:
    """Delete an object, retrying like the upload does (deleting a missing key succeeds)."""
    s3 = client(target)
    with_retries(f"deleting {key}", lambda: s3.delete_object(Bucket=target.bucket, Key=key),
                 retries, base_delay)  # fmt: skip
