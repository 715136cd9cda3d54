"""Document sources behind one interface: local folders, record files, any fsspec URI.

A scan lists documents cheaply (path, size, mtime) and resolves each one's access groups and
metadata; bytes are read only when the manifest cannot prove a document unchanged. Problems with a
single entry (a link out of the root, an unreadable file, a malformed record) become a ``ScanItem``
with ``error`` set, never an exception that stops the scan.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path, PurePosixPath

from ingest_platform.config import SourceConfig
from ingest_platform.errors import SourceUnavailable

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".meta.json"
RECORD_FORMAT = "record"


@dataclass
class ScanItem:
    """One document as a source lists it. ``read()`` returns its bytes (a record: its JSON)."""

    doc_id: str
    source: str
    source_uri: str
    relpath: str
    size: int
    mtime: datetime
    access_groups: list[str]
    metadata: dict = field(default_factory=dict)
    title: str | None = None
    format_hint: str | None = None
    error: str | None = None
    # ``error`` came from the storage, not the document (``is_outage``): the manifest keeps the
    # document's last good version instead of dropping it.
    outage: bool = False
    read: Callable[[], bytes] | None = None
    # Records carry their content inline, so their hash is known at scan time.
    content_sha256: str | None = None

    @property
    def meta_sha256(self) -> str:
        payload = json.dumps(
            {"groups": sorted(self.access_groups), "metadata": self.metadata, "title": self.title},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


# ---- outages --------------------------------------------------------------------------------------

# Errors of the storage rather than of the document: a network share that hiccups, a stale NFS
# handle, a timeout, a file another program holds locked. Permission denied is not one of them:
# taking read access away is how some owners withdraw a file, so it fails closed (the document
# leaves the index); so does a file that is gone (a deletion, seen as such by the next scan).
OUTAGE_ERRNOS = frozenset(getattr(errno, name) for name in (
    "EIO", "ESTALE", "ETIMEDOUT", "EBUSY", "EAGAIN", "EINTR", "ENOLCK", "EDEADLK", "ENOTCONN", "ECONNRESET",
    "ECONNABORTED", "ECONNREFUSED", "EHOSTDOWN", "EHOSTUNREACH", "ENETDOWN", "ENETUNREACH", "ENETRESET",
    "EREMOTEIO", "ENOMEDIUM", "ECOMM",
) if hasattr(errno, name))


def is_outage(exc: BaseException) -> bool:
    """Whether a failed read says nothing about the document itself (see ``OUTAGE_ERRNOS``), so
    its last good version may keep serving.

    Example: ``is_outage(OSError(errno.EIO, "Input/output error"))`` is True,
    ``is_outage(PermissionError(errno.EACCES, "Permission denied"))`` is False."""
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    return isinstance(exc, OSError) and exc.errno in OUTAGE_ERRNOS


def unreadable(exc: OSError) -> str:
    """The one-line reason recorded for a file that could not be read."""
    return f"unreadable: {type(exc).__name__}: {exc.strerror or exc}"


# ---- globs --------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` spans folders, ``*`` and ``?`` stay inside one path segment."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def glob_match(relpath: str, pattern: str) -> bool:
    return bool(_glob_regex(pattern).match(relpath))


def _selected(relpath: str, cfg: SourceConfig) -> bool:
    return any(glob_match(relpath, p) for p in cfg.include) and not any(
        glob_match(relpath, p) for p in cfg.exclude
    )


# ---- access groups ------------------------------------------------------------------------------


def resolve_groups(
    relpath: str, cfg: SourceConfig, default_groups: list[str], explicit: list[str] | None
) -> list[str]:
    """Sidecar/record groups replace everything; else the union of matching path rules; else the
    source default; else the platform default (empty = visible to nobody)."""
    if explicit is not None:
        return sorted(set(explicit))
    ruled = [g for rule in cfg.access_rules if glob_match(relpath, rule.pattern) for g in rule.groups]
    if ruled:
        return sorted(set(ruled))
    if cfg.access_groups is not None:
        return sorted(set(cfg.access_groups))
    return sorted(set(default_groups))


def _validate_groups(value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(g, str) and g for g in value):
        raise ValueError("access_groups must be a list of non-empty strings")
    if any(ord(c) < 32 for g in value for c in g):
        raise ValueError("access_groups may not contain control characters")
    return value


def _split_sidecar(raw: bytes) -> tuple[list[str] | None, dict]:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("sidecar must hold a JSON object")
    groups = data.pop("access_groups", None)
    return (None if groups is None else _validate_groups(groups)), data


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# ---- sources ------------------------------------------------------------------------------------


class Source:
    """Lists a source's documents. Subclasses implement ``scan``."""

    def __init__(self, cfg: SourceConfig, default_groups: list[str]):
        self.cfg = cfg
        self.default_groups = default_groups

    @property
    def name(self) -> str:
        return self.cfg.name

    def doc_id(self, relpath: str) -> str:
        return f"{self.cfg.name}:{relpath}"

    def scan(self) -> Iterator[ScanItem]:  # pragma: no cover - interface
        raise NotImplementedError


class DirectorySource(Source):
    """A local folder tree. Links are followed only when they resolve inside the root."""

    def __init__(self, cfg: SourceConfig, default_groups: list[str]):
        super().__init__(cfg, default_groups)
        self.root = Path(os.path.abspath(os.path.expanduser(cfg.path.removeprefix("file://"))))

    def scan(self) -> Iterator[ScanItem]:
        if not self.root.is_dir():
            raise SourceUnavailable(f"{self.root} is a file, not a folder" if self.root.is_file()
                                    else f"folder {self.root} does not exist")
        try:
            empty = next(os.scandir(self.root), None) is None
        except OSError as exc:
            raise SourceUnavailable(f"folder {self.root} cannot be read: "
                                    f"{exc.strerror or exc}") from None
        if empty:
            # An unmounted share looks exactly like this; a real removal of every document is
            # done by removing the source from the configuration.
            raise SourceUnavailable(f"folder {self.root} is empty (not mounted?)")
        real_root = self.root.resolve()

        def fail(exc: OSError) -> None:  # os.walk swallows listing errors unless told otherwise
            raise SourceUnavailable(f"cannot list {exc.filename}: {exc.strerror or exc}")

        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False, onerror=fail):
            dirnames.sort()
            names = set(filenames)
            for d in list(dirnames):
                full = Path(dirpath, d)
                if full.is_symlink():
                    # Never walk into linked folders: that is how loops and escapes happen.
                    rel = full.relative_to(self.root).as_posix()
                    if _selected(rel, self.cfg) or _selected(rel + "/x", self.cfg):
                        yield self._failed(rel, "symlink to a folder: not followed")
            for fname in sorted(filenames):
                if fname.endswith(SIDECAR_SUFFIX):  # metadata of a document, never one itself
                    if fname[: -len(SIDECAR_SUFFIX)] not in names:
                        log.info("orphan sidecar %s skipped: its document is gone", Path(dirpath, fname))
                    continue
                full = Path(dirpath, fname)
                rel = full.relative_to(self.root).as_posix()
                if not _selected(rel, self.cfg):
                    continue
                yield self._item(full, rel, real_root)

    def _failed(self, rel: str, reason: str, size: int = 0, mtime: float = 0.0) -> ScanItem:
        return ScanItem(
            doc_id=self.doc_id(rel), source=self.name, source_uri=(self.root / rel).as_uri(),
            relpath=rel, size=size, mtime=_ts(mtime), access_groups=[], error=reason,
        )

    def _outage(self, full: Path, rel: str, reason: str) -> ScanItem:
        """A file the storage failed to stat: its groups are still resolved (rules and sidecar),
        so the manifest keeps its last good version only if they did not narrow; a sidecar that
        cannot be read leaves none (fail closed)."""
        item = self._failed(rel, reason)
        item.outage = True
        try:
            sidecar = full.with_name(full.name + SIDECAR_SUFFIX)
            explicit = _split_sidecar(sidecar.read_bytes())[0] if sidecar.exists() else None
            item.access_groups = resolve_groups(rel, self.cfg, self.default_groups, explicit)
        except (OSError, ValueError):
            pass
        return item

    def _item(self, full: Path, rel: str, real_root: Path) -> ScanItem:
        try:
            if full.is_symlink():
                target = full.resolve()
                if not target.is_relative_to(real_root):
                    return self._failed(rel, "symlink points outside the source root: not followed")
            st = full.stat()
        except RuntimeError:  # Path.resolve() on a link loop before Python 3.13
            return self._failed(rel, "symlink loop: not followed")
        except OSError as exc:  # broken link, link loop, permission
            if exc.errno == errno.ELOOP:
                return self._failed(rel, "symlink loop: not followed")
            if is_outage(exc):
                return self._outage(full, rel, unreadable(exc))
            return self._failed(rel, unreadable(exc))
        if not stat.S_ISREG(st.st_mode):
            return self._failed(rel, "not a regular file", 0, st.st_mtime)
        if not os.access(full, os.R_OK):
            return self._failed(rel, "unreadable: permission denied", st.st_size, st.st_mtime)
        explicit, metadata, mtime = None, {}, st.st_mtime
        sidecar = full.with_name(full.name + SIDECAR_SUFFIX)
        if sidecar.exists():
            try:
                explicit, metadata = _split_sidecar(sidecar.read_bytes())
                # A sidecar edit must re-evaluate its document, so the newer mtime counts.
                mtime = max(mtime, sidecar.stat().st_mtime)
            except (OSError, ValueError) as exc:
                # Fail closed: indexing with the wrong groups could leak the document.
                return self._failed(rel, f"invalid sidecar {sidecar.name}: {exc}", st.st_size, st.st_mtime)
        return ScanItem(
            doc_id=self.doc_id(rel), source=self.name, source_uri=full.absolute().as_uri(),
            relpath=rel, size=st.st_size, mtime=_ts(mtime),
            access_groups=resolve_groups(rel, self.cfg, self.default_groups, explicit),
            metadata=metadata, read=full.read_bytes,
        )


class FsspecSource(Source):
    """Any fsspec filesystem (``file://``, ``memory://``, ``s3://`` with its driver installed)."""

    def __init__(self, cfg: SourceConfig, default_groups: list[str]):
        super().__init__(cfg, default_groups)
        import fsspec

        try:
            self.fs, self.root = fsspec.core.url_to_fs(cfg.path)
        except (ImportError, ValueError) as exc:  # e.g. s3:// without s3fs installed
            raise SourceUnavailable(f"cannot open {cfg.path}: {exc}") from None
        self.root = self.root.rstrip("/")
        self.protocol = cfg.path.split("://", 1)[0] if "://" in cfg.path else "file"

    def _uri(self, path: str) -> str:
        return f"{self.protocol}://{path}" if not path.startswith(f"{self.protocol}://") else path

    def scan(self) -> Iterator[ScanItem]:
        try:
            if not self.fs.exists(self.root):
                raise SourceUnavailable(f"{self.cfg.path} does not exist")
            # fsspec's default drops folders it cannot read; a partial listing would look like deletions.
            entries = self.fs.find(self.root, detail=True, on_error="raise")
        except SourceUnavailable:
            raise
        except Exception as exc:  # each driver has its own errors (botocore, gcsfs, ...)
            raise SourceUnavailable(f"cannot list {self.cfg.path}: "
                                    f"{type(exc).__name__}: {exc}") from None
        if not any(info.get("type") != "directory" for info in entries.values()):
            raise SourceUnavailable(f"{self.cfg.path} is empty (not mounted?)")
        names = set(entries)
        for path in sorted(entries):
            info = entries[path]
            if info.get("type") == "directory":
                continue
            if path.endswith(SIDECAR_SUFFIX):
                continue
            rel = path[len(self.root) :].lstrip("/")
            if not _selected(rel, self.cfg):
                continue
            yield self._item(path, rel, info, names)

    def _item(self, path: str, rel: str, info: dict, names: set[str]) -> ScanItem:
        mtime = _info_mtime(info)
        explicit, metadata = None, {}
        side = path + SIDECAR_SUFFIX
        if side in names:
            try:
                explicit, metadata = _split_sidecar(self._read(side))
                mtime = max(mtime, _info_mtime(self.fs.info(side)))
            except (OSError, ValueError) as exc:
                return ScanItem(
                    doc_id=self.doc_id(rel), source=self.name, source_uri=self._uri(path),
                    relpath=rel, size=int(info.get("size") or 0), mtime=_ts(mtime),
                    access_groups=[], error=f"invalid sidecar: {exc}",
                )
        return ScanItem(
            doc_id=self.doc_id(rel), source=self.name, source_uri=self._uri(path), relpath=rel,
            size=int(info.get("size") or 0), mtime=_ts(mtime),
            access_groups=resolve_groups(rel, self.cfg, self.default_groups, explicit),
            metadata=metadata, read=lambda p=path: self._read(p),
        )

    def _read(self, path: str) -> bytes:
        """Each driver raises its own errors (botocore, aiohttp, ...). One that is not an
        ``OSError`` is the storage's (a dropped connection, a timeout): it becomes an I/O error,
        which the manifest and the parse stage treat as an outage (``is_outage``), instead of
        escaping and stopping the run."""
        try:
            return self.fs.cat_file(path)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - see above
            raise OSError(errno.EIO, f"{type(exc).__name__}: {exc}") from exc


def _info_mtime(info: dict) -> float:
    for key in ("mtime", "LastModified", "last_modified", "created", "modified"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            return value.timestamp()
        try:
            return float(value)
        except (TypeError, ValueError):
            try:
                return datetime.fromisoformat(str(value)).timestamp()
            except ValueError:
                continue
    return 0.0


class RecordSource(Source):
    """JSONL or Parquet records, one document each: ``id``/``_id``, ``title``, ``text``, ``metadata``.

    A BEIR ``corpus.jsonl`` loads as-is. A malformed line or a duplicate id becomes a failed item
    for that record alone.
    """

    def __init__(self, cfg: SourceConfig, default_groups: list[str]):
        super().__init__(cfg, default_groups)
        import fsspec

        self.fs, self.root = fsspec.core.url_to_fs(cfg.path)

    def _files(self) -> list[str]:
        if not self.fs.exists(self.root):
            raise FileNotFoundError(f"source {self.name!r}: {self.cfg.path} does not exist")
        if self.fs.isdir(self.root):
            found = [p for p in self.fs.find(self.root) if p.endswith((".jsonl", ".ndjson", ".parquet"))]
            return sorted(found)
        return [self.root]

    def scan(self) -> Iterator[ScanItem]:
        seen: dict[str, str] = {}
        for path in self._files():
            info = self.fs.info(path)
            mtime = _ts(_info_mtime(info))
            uri = f"{self.cfg.path.split('://')[0]}://{path}" if "://" in self.cfg.path else path
            rows = self._parquet_rows(path) if path.endswith(".parquet") else self._jsonl_rows(path)
            for where, record, error in rows:
                yield self._record_item(uri, where, record, error, mtime, seen)

    def _jsonl_rows(self, path: str):
        with self.fs.open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                    if not isinstance(record, dict):
                        raise ValueError("a record must be a JSON object")
                except (ValueError, UnicodeDecodeError) as exc:
                    yield f"line {lineno}", None, f"malformed record on line {lineno}: {str(exc)[:120]}"
                    continue
                yield f"line {lineno}", record, None

    def _parquet_rows(self, path: str):
        import pyarrow.parquet as pq

        with self.fs.open(path, "rb") as fh:
            for batch in pq.ParquetFile(fh).iter_batches(batch_size=2048):
                for i, record in enumerate(batch.to_pylist()):
                    yield f"row {i}", record, None

    def _record_item(self, uri, where, record, error, mtime, seen) -> ScanItem:
        rid = None if record is None else record.get("_id", record.get("id", record.get("doc_id")))
        rid = None if rid is None else str(rid)
        key = rid or f"{Path(uri).name}@{where}"
        if any(ord(c) < 32 for c in key):
            key = f"{Path(uri).name}@{where}"
        base = dict(
            doc_id=self.doc_id(key), source=self.name, source_uri=f"{_as_uri(uri)}#{key}",
            relpath=key, size=0, mtime=mtime, access_groups=[], format_hint=RECORD_FORMAT,
        )
        if error:
            return ScanItem(**base, error=error)
        if not rid:
            return ScanItem(**base, error=f"record at {where} has no id (_id, id or doc_id)")
        if any(ord(c) < 32 for c in rid):
            # It would reach SQL filters, where NUL cannot be expressed: refused here, once.
            return ScanItem(**base, error=f"record at {where}: id {rid!r} contains control characters")
        if rid in seen:
            # Its own doc id, so the manifest records the skipped duplicate instead of folding it
            # into the first record of that id.
            key = f"{rid}@{where}"
            base.update(doc_id=self.doc_id(key), relpath=key, source_uri=f"{_as_uri(uri)}#{key}")
            return ScanItem(**base, error=f"duplicate record id {rid!r} (first at {seen[rid]}): skipped")
        seen[rid] = where
        text = record.get("text") or record.get("contents") or ""
        if not isinstance(text, str):
            return ScanItem(**base, error=f"record {rid!r}: text is not a string")
        title = record.get("title") if isinstance(record.get("title"), str) else None
        metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
        explicit = None
        if "access_groups" in metadata:
            metadata = dict(metadata)
            try:
                explicit = _validate_groups(metadata.pop("access_groups"))
            except ValueError as exc:
                return ScanItem(**base, error=f"record {rid!r}: {exc}")
        payload = json.dumps({"title": title or "", "text": text}, ensure_ascii=False).encode()
        base.update(
            size=len(payload),
            access_groups=resolve_groups(rid, self.cfg, self.default_groups, explicit),
        )
        return ScanItem(
            **base, metadata=metadata, title=title, read=lambda p=payload: p,
            content_sha256=hashlib.sha256(payload).hexdigest(),
        )


def _as_uri(path: str) -> str:
    return path if "://" in path else PurePosixPath(os.path.abspath(path)).as_uri()


def make_source(cfg: SourceConfig, default_groups: list[str]) -> Source:
    kind = cfg.resolved_kind()
    if kind == "records":
        return RecordSource(cfg, default_groups)
    if kind == "fsspec":
        return FsspecSource(cfg, default_groups)
    return DirectorySource(cfg, default_groups)


def sources_from_paths(paths: list[str]) -> list[SourceConfig]:
    """``--source PATH_OR_URI`` values become sources named after their last path segment."""
    out: list[SourceConfig] = []
    for raw in paths:
        name, _, path = raw.partition("=") if "=" in raw.split("://", 1)[0] else ("", "", raw)
        if not name:
            stem = PurePosixPath(path.rstrip("/").split("://")[-1]).name or "source"
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem.removesuffix(".jsonl").removesuffix(".parquet"))
        taken = {s.name for s in out}
        base, n = name, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        out.append(SourceConfig(name=name, path=path))
    return out
