"""Finding, verifying and opening the dataset archives.

Sources are tried in the order params.yaml lists them: the mirror folder named by the environment
variable SKUNET_DATA_MIRROR, an archive the user placed in data/downloads/, then public URLs. The
first source whose files all exist and verify wins. A file that exists but fails its checksum is an
error, never a reason to try the next source: a wrong archive must not pass silently.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from tqdm import tqdm

from skunet.atomic import atomic_file
from skunet.errors import SkunetError

log = logging.getLogger(__name__)

MIRROR_ENV = "SKUNET_DATA_MIRROR"
# A download that fails for one of these is said and the next source tried; any other OSError
# (data/downloads not writable, a full disk) is an error naming the file.
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException)
DOWNLOADS = Path("data/downloads")
_CHUNK = 1 << 20
# The largest entry an archive may declare (uncompressed) for us to read it. The official files
# are far smaller (DRIVE's largest, a training TIFF, is 0.8 MB; CHASE_DB1's, a JPEG, 74 kB), and an
# entry is held in memory whole: a damaged or hostile header declaring gigabytes is refused at once
# instead of read. zipfile stops reading an entry at its declared size, so the limit holds.
MAX_ENTRY_BYTES = 64 << 20


@dataclass(frozen=True)
class ArchiveFile:
    name: str
    sha256: str
    url: str | None = None


@dataclass(frozen=True)
class Source:
    kind: str  # mirror | local | url
    files: tuple[ArchiveFile, ...]


def parse_sources(entries: list[dict[str, Any]], where: str) -> list[Source]:
    """Turn the params list into Sources, naming the bad entry on a malformed one."""
    sources = []
    for i, entry in enumerate(entries):
        key = f"{where}[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"kind", "files"}:
            raise SkunetError(f"params.yaml: {key} must have exactly the keys kind, files")
        if entry["kind"] not in ("mirror", "local", "url"):
            raise SkunetError(f"params.yaml: {key}.kind = {entry['kind']!r} must be mirror, local or url")
        files = []
        for j, f in enumerate(entry["files"]):
            required = {"name", "sha256", "url"} if entry["kind"] == "url" else {"name", "sha256"}
            if not isinstance(f, dict) or set(f) != required:
                raise SkunetError(
                    f"params.yaml: {key}.files[{j}] must have exactly the keys {', '.join(sorted(required))}"
                )
            files.append(ArchiveFile(f["name"], str(f["sha256"]).lower(), f.get("url")))
        sources.append(Source(entry["kind"], tuple(files)))
    return sources


def sha256sum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, expected: str) -> Path:
    actual = sha256sum(path)
    if actual != expected:
        raise SkunetError(
            f"{path}: checksum mismatch (sha256 {actual[:12]}..., expected {expected[:12]}...);"
            " the archive is corrupt or not the expected release: replace it with a fresh copy"
        )
    return path


def _folder(kind: str) -> Path | None:
    if kind == "mirror":
        mirror = os.environ.get(MIRROR_ENV)
        return Path(mirror) if mirror else None
    return DOWNLOADS


def resolve(
    sources: list[Source], help_text: str, allow_network: bool = True
) -> list[tuple[Path, ArchiveFile]]:
    """Return the verified archives (path, expected file) of the first usable source."""
    for source in sources:
        if source.kind == "url":
            if not allow_network:
                continue
            try:
                return [(fetch(f), f) for f in source.files]
            except NETWORK_ERRORS as err:  # no network, a refused or cut connection: said, and on
                log.warning("download failed: %s", err)
                continue
        folder = _folder(source.kind)
        if folder is None:
            continue
        paths = [folder / f.name for f in source.files]
        if all(p.is_file() for p in paths):
            return [(verify(p, f.sha256), f) for p, f in zip(paths, source.files)]
    names = list(dict.fromkeys(f.name for source in sources for f in source.files))
    raise SkunetError(f"no archive found ({_mirror_state(names)}; nothing in {DOWNLOADS}/, download failed): {help_text}")


def _mirror_state(names: list[str]) -> str:
    """What the mirror variable holds, in a few words, for the error that no archive was found."""
    mirror = os.environ.get(MIRROR_ENV)
    if mirror is None:
        return f"{MIRROR_ENV} is not set"
    if not mirror:
        return f"{MIRROR_ENV} is empty"
    if not Path(mirror).exists():
        return f"{MIRROR_ENV}={mirror}: no such folder"
    if not Path(mirror).is_dir():
        return f"{MIRROR_ENV}={mirror}: a file, not the folder that holds the archives"
    return f"{MIRROR_ENV}={mirror}: no {' or '.join(names)} in it"


def fetch(file: ArchiveFile) -> Path:
    """Download `file.url` into data/downloads/ with a progress bar, verify, then move into place."""
    target = DOWNLOADS / file.name
    if target.is_file():
        return verify(target, file.sha256)
    request = urllib.request.Request(file.url, headers={"User-Agent": "skunet"})
    with atomic_file(target) as partial:
        with urllib.request.urlopen(request, timeout=60) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=file.name) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        got = partial.stat().st_size
        if total is not None and got < total:
            raise ConnectionError(f"{file.url}: the transfer stopped after {got} of {total} bytes")
        actual = sha256sum(partial)
        if actual != file.sha256:
            raise SkunetError(f"{file.url}: what it sent ({got} bytes, sha256 {actual[:12]}...) is not {file.name}"
                              f" (sha256 {file.sha256[:12]}...); the address may have changed: download"
                              f" {file.name} yourself and put it in {DOWNLOADS}/")
    return target


def _check_entry_name(archive: Path, name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise SkunetError(
            f"{archive}: entry '{name}' would escape the extraction folder; refusing the archive"
            " (get a clean copy from the official source)"
        )


def archive_members(
    archive: Path, needed: Callable[[str], bool] = lambda name: True
) -> Iterator[tuple[str, bytes]]:
    """Yield (entry name, bytes) of every file in a zip that `needed` accepts, after checking
    every name is safe and before reading each, its declared size.

    Nothing is extracted to disk: the caller decodes what it needs, so no entry can land outside
    the output folder, and a corrupt entry (bad CRC, truncated data) raises before any output is
    moved into place.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_entry_name(archive, info.filename)
            for info in infos:
                if info.is_dir() or not needed(info.filename):
                    continue
                if info.file_size > MAX_ENTRY_BYTES:
                    raise SkunetError(
                        f"{archive}: entry '{info.filename}' declares {info.file_size} bytes, more than"
                        f" any file of the official releases by far (limit {MAX_ENTRY_BYTES}); refusing"
                        " the archive (get a clean copy from the official source)"
                    )
                yield info.filename, zf.read(info)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as err:
        raise SkunetError(f"{archive}: corrupt or truncated zip ({err}); replace it with a fresh copy") from None
