"""What was stored, checked the way every S3 server allows; and Test connection.

A backup's object is checked against what was sent (:class:`Sent`): the size, then
the first evidence there is (the ETag in either form, an S3 checksum, the object read
back). Test connection (:func:`probe`) takes the path a backup takes on a small
object. Both reach S3 only through :mod:`app.backups.storage`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from app.backups import storage
from app.backups.storage import S3Target

# Test connection: one full part of the smallest size S3 allows, and a small last one.
PROBE_TAIL = 64 << 10


@dataclass
class Sent:
    """What an upload sent, to check what was stored: computed as the bytes went out."""

    size: int = 0
    part_md5s: list[bytes] = field(default_factory=list)
    _sha256: Any = field(default_factory=hashlib.sha256, repr=False)
    _md5: Any = field(default_factory=hashlib.md5, repr=False)

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._sha256.update(chunk)
        self._md5.update(chunk)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def etags(self) -> dict[str, str]:
        """The ETags S3 servers give such an object, unquoted: AWS and most give the MD5 of
        the part MD5s with ``-N``; others (s3rver) the MD5 of the whole object."""
        return {
            f"{hashlib.md5(b''.join(self.part_md5s)).hexdigest()}-{len(self.part_md5s)}":
                "the multipart ETag (MD5 of the part MD5s)",
            self._md5.hexdigest(): "the ETag (MD5 of the whole object)",
        }  # fmt: skip


class ObjectMismatch(storage.StorageError):
    """The stored object is not what was sent: its size or its bytes differ."""


def verify(
    target: S3Target, key: str, sent: Sent, *, retries: int = 0, base_delay: float = 1.0
) -> tuple[str, str]:
    """Check the stored object against ``sent``; returns (ETag, how it was verified).

    The size must match. Then the first evidence there is decides: the ETag in either
    form (:meth:`Sent.etags`); a full-object SHA-256 checksum the server returns; else
    the object is read back and its SHA-256 compared. An ETag of neither form proves
    nothing (SSE-KMS and SSE-C ETags are not MD5s, some servers make their own), so
    only a size or a content that differs raises :class:`ObjectMismatch`; a check that
    could not run raises :class:`storage.StorageError`. Nothing here deletes anything.
    """
    found = storage.head_object(target, key, retries=retries, base_delay=base_delay)
    size, etag = found.get("ContentLength"), found.get("ETag") or ""
    if size != sent.size:
        raise ObjectMismatch(f"the bucket holds {size} bytes, {sent.size} were sent")
    how = sent.etags().get(etag.strip('"'))
    if how:
        return etag, f"size and {how} match"
    checksum = found.get("ChecksumSHA256")  # "…-N" or COMPOSITE: a checksum of checksums
    whole = found.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
    if checksum and "-" not in checksum and whole:
        if base64.b64decode(checksum).hex() != sent.sha256:
            raise ObjectMismatch("the SHA-256 checksum S3 reports differs from what was sent")
        return etag, "size and the S3 SHA-256 checksum match"
    read = storage.with_retries(
        "reading the object back", lambda: _sha256_of(target, key), retries, base_delay
    )
    if read != sent.sha256:
        raise ObjectMismatch(f"read back, its SHA-256 is {read}, {sent.sha256} was sent")
    return etag, f"ETag {etag} is not an MD5 of it; read back, size and SHA-256 match"


def _sha256_of(target: S3Target, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in storage.iter_object(target, key):
        digest.update(chunk)
    return digest.hexdigest()


def probe(target: S3Target) -> list[tuple[str, bool, str]]:
    """Test connection: the path a backup takes, on a small object; (step, ok, detail) each.

    A multipart upload of two parts (the smallest full part S3 allows and a small
    last one), the check a backup's object gets (:func:`verify`), a ranged read
    across the parts' boundary, then delete. Every failure is reported, none raised.
    """
    key = target.key(f".slipway-probe-{int(time.time() * 1000)}")
    data = os.urandom(storage.MIN_PART + PROBE_TAIL)  # nothing on the way can compress it
    sent = Sent()
    sent.update(data)
    with tempfile.NamedTemporaryFile(prefix="slipway-probe-") as file:
        file.write(data)
        file.flush()
        failed = _probe_upload(target, key, file.name, sent, data)
    if failed:
        return [("write", False, failed)]
    steps = [("write", True, f"uploaded {key} in 2 parts ({len(data)} bytes), as backups are")]
    try:
        steps.append(("check", True, verify(target, key, sent)[1]))
    except storage.StorageError as exc:
        steps.append(("check", False, f"{exc}; every backup here would fail this check"))
    start, end = storage.MIN_PART - 512, storage.MIN_PART + 511
    try:
        ok = storage.read_range(target, key, start, end) == data[start : end + 1]
        detail = "read them back" if ok else "a ranged read returned different bytes"
        steps.append(("read", ok, f"bytes {start}-{end}: {detail}"))
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none raised
        steps.append(("read", False, f"a ranged read failed: {storage.describe(exc)}"))
    try:
        storage.delete(target, key)
        steps.append(("delete", True, "deleted it"))
    except Exception as exc:  # noqa: BLE001
        steps.append(("delete", False, storage.describe(exc)))
    return steps


def _probe_upload(target: S3Target, key: str, path: str, sent: Sent, data: bytes) -> str:
    """Upload the probe; returns why it failed ('' when it did not)."""
    upload = storage.MultipartUpload(target, key, threads=2, retries=0)
    try:
        upload.start()
        for offset, length in (
            (0, storage.MIN_PART),
            (storage.MIN_PART, len(data) - storage.MIN_PART),
        ):
            upload.add(path, offset, length, hashlib.md5(data[offset : offset + length]).digest())
        upload.complete()
        sent.part_md5s = upload.part_md5s
        return ""
    except storage.StorageError as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001
        reason = storage.describe(exc)
    finally:
        upload.close()
    if upload.upload_id:
        try:
            storage.abort(target, key, upload.upload_id)
        except storage.StorageError as exc:
            reason += f"; {exc}"
    return reason
