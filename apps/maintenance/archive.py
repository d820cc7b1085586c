"""The backup archive file, without Django: one tar.gz, ``manifest.json`` first, then the files.

The manifest lists every other member with its SHA-256 and size, so a restore can check each
file as it comes out of the archive, before anything in the target is touched.
"""
from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
import time
import zlib
from contextlib import closing
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

FORMAT = "nanosentri-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_CHUNK = 1024 * 1024


class BackupError(Exception):
    """A backup or restore cannot go on; the message says why, for the person running it."""


class ArchiveError(BackupError):
    """The archive is missing, unreadable, damaged or not a NanoSentri backup."""


def file_digest(path: Path) -> tuple[str, int]:
    """(SHA-256 hex, size in bytes) of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while piece := f.read(_CHUNK):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size


def sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (the backup API: WAL content included, and
    writers of the source are not held up for longer than a page copy)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(str(source), timeout=30)) as src, closing(sqlite3.connect(str(target))) as dst:
        src.backup(dst)


def archive_write(path: Path, manifest: dict, files: Iterable[tuple[str, Path]]) -> None:
    """Write ``manifest`` (as manifest.json) and then each (arcname, file) into a new tar.gz."""
    now = time.time()
    with tarfile.open(path, "w:gz", compresslevel=6) as tar:
        data = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
        tar.addfile(_info(MANIFEST, len(data), now), io.BytesIO(data))
        for arcname, source in files:
            with open(source, "rb") as f:
                size = Path(source).stat().st_size
                tar.addfile(_info(arcname, size, now), f)


def _info(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o600
    return info


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name


class ArchiveReader:
    """Read a backup: ``manifest`` on open, then ``extract_to`` checks and writes every file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ArchiveError(f"{self.path}: no such file")
        try:
            self._tar = tarfile.open(self.path, "r:gz")
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise ArchiveError(f"{self.path} is not a readable tar.gz archive ({exc})") from None
        self.manifest = self._read_manifest()

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> "ArchiveReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_manifest(self) -> dict:
        try:
            first = self._tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise ArchiveError(f"{self.path} has no {MANIFEST} at its start: not a NanoSentri backup")
            manifest = json.load(self._tar.extractfile(first))
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise ArchiveError(f"{self.path} is damaged ({exc})") from None
        except ValueError as exc:  # json, or UnicodeDecodeError
            raise ArchiveError(f"{self.path}: {MANIFEST} is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ArchiveError(f"{self.path} is not a NanoSentri backup (its {MANIFEST} says otherwise)")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ArchiveError(
                f"{self.path} is a backup in format version {manifest.get('format_version')}; "
                f"this NanoSentri reads version {FORMAT_VERSION}"
            )
        if not isinstance(manifest.get("files"), dict):
            raise ArchiveError(f"{self.path}: {MANIFEST} lists no files")
        return manifest

    def _members(self) -> Iterator[tarfile.TarInfo]:
        try:
            for member in self._tar:
                yield member
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise ArchiveError(f"{self.path} is damaged or cut short ({exc})") from None

    def extract_to(self, target: Path) -> None:
        """Write every listed file under ``target``, checking its name, size and SHA-256.

        Raises ArchiveError on the first unexpected member, a checksum mismatch or a listed
        file that is not in the archive; what was written so far stays under ``target``.
        """
        expected: dict = self.manifest["files"]
        seen = set()
        for member in self._members():
            if member.name == MANIFEST:
                continue
            if member.name not in expected or not _safe_name(member.name):
                raise ArchiveError(f"{self.path}: unexpected member {member.name!r} (not in the manifest)")
            if not member.isfile():
                raise ArchiveError(f"{self.path}: {member.name!r} is not a regular file")
            out = target / member.name
            out.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            size = 0
            source = self._tar.extractfile(member)
            try:
                with open(out, "wb") as f:
                    while piece := source.read(_CHUNK):
                        digest.update(piece)
                        size += len(piece)
                        f.write(piece)
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                raise ArchiveError(f"{self.path} is damaged or cut short in {member.name} ({exc})") from None
            want = expected[member.name]
            if size != want.get("size") or digest.hexdigest() != want.get("sha256"):
                raise ArchiveError(
                    f"{self.path}: checksum mismatch for {member.name} "
                    f"(sha256 {digest.hexdigest()[:12]}…, {size} bytes; the manifest says "
                    f"{str(want.get('sha256'))[:12]}…, {want.get('size')} bytes)"
                )
            seen.add(member.name)
        missing = sorted(set(expected) - seen)
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ArchiveError(f"{self.path} lacks files its manifest lists: {', '.join(missing[:3])}{more}")
