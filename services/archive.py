"""Cold storage for archived memories: JSONL objects in Cloud Storage, or a local directory.

``ARCHIVE_BUCKET`` set: objects in that bucket through google-cloud-storage (imported on
first use, one client per archive). Not set: files under ``ARCHIVE_DIR`` (default
``<DATA_DIR>/archive``). Both hold one JSON object per line. Every object of a user lives
under ``user_prefix(user_id)``, so erasing a user can find all of them by listing, even an
object left behind by a run that failed after writing it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from services.config import Settings

Record = dict[str, Any]


class Archive(Protocol):
    description: str

    def write(self, name: str, records: Iterable[Record]) -> None: ...

    def read(self, name: str) -> list[Record]: ...

    def list(self, prefix: str) -> list[str]: ...

    def delete(self, name: str) -> None: ...


def subject_hash(user_id: str) -> str:
    """A stable pseudonym for a user id (archive paths, deletion records)."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def user_prefix(user_id: str) -> str:
    return f"users/{subject_hash(user_id)[:40]}/"


def encode(records: Iterable[Record]) -> bytes:
    return b"".join(
        json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        for record in records
    )


def decode(data: bytes) -> list[Record]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


class LocalArchive:
    """Objects as files under ``root`` (written atomically: temp file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.description = f"local directory {self.root}"

    def write(self, name: str, records: Iterable[Record]) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(encode(records))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read(self, name: str) -> list[Record]:
        try:
            return decode(self._path(name).read_bytes())
        except FileNotFoundError:
            return []

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.exists():
            return []
        found = base.rglob("*") if base.is_dir() else [base]
        return sorted(
            str(path.relative_to(self.root))
            for path in found
            if path.is_file() and not path.name.startswith(".tmp-")
        )

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def _path(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"archive object name {name!r} escapes the archive")
        return path


class GcsArchive:
    """Objects in a Cloud Storage bucket (JSONL, ``application/x-ndjson``).

    Every call retries 429/5xx and connection errors with backoff for at most
    ``retry_seconds`` (the library's default would keep trying for 120 s, while the
    retention sweep holds a chunk's row locks), then raises; the sweep's transaction then
    rolls back and nothing is removed from the hot table. Object names are unique per write,
    so retrying an upload is safe.
    """

    def __init__(self, bucket: str, client: Any | None = None, retry_seconds: float = 20.0) -> None:
        self.bucket_name = bucket
        self.description = f"gs://{bucket}"
        self._client = client
        self._bucket: Any | None = None
        self.retry_seconds = retry_seconds

    def write(self, name: str, records: Iterable[Record]) -> None:
        self._blob(name).upload_from_string(
            encode(records), content_type="application/x-ndjson", retry=self._retry()
        )

    def read(self, name: str) -> list[Record]:
        from google.api_core.exceptions import NotFound

        try:
            return decode(self._blob(name).download_as_bytes(retry=self._retry()))
        except NotFound:
            return []

    def list(self, prefix: str) -> list[str]:
        blobs = self._get_bucket().list_blobs(prefix=prefix, retry=self._retry())
        return sorted(blob.name for blob in blobs)

    def delete(self, name: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self._blob(name).delete(retry=self._retry())

    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.retry_seconds)

    def _blob(self, name: str) -> Any:
        return self._get_bucket().blob(name)

    def _get_bucket(self) -> Any:
        if self._bucket is None:
            if self._client is None:
                from google.cloud import storage

                self._client = storage.Client()
            self._bucket = self._client.bucket(self.bucket_name)
        return self._bucket


def make_archive(settings: Settings) -> Archive:
    if settings.archive_bucket:
        return GcsArchive(settings.archive_bucket)
    return LocalArchive(Path(settings.archive_dir or Path(settings.data_dir) / "archive"))
