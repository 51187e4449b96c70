"""Archives and checksums: sources in order, checksum errors, unsafe and corrupt zips."""

from __future__ import annotations

import hashlib
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import FAKE_SIZE, ROOT, fake_drive_zip, run_stage
from skunet.data.raw import NATIVE_SIZE, read_archives
from skunet.data.sources import (
    MAX_ENTRY_BYTES,
    ArchiveFile,
    Source,
    archive_members,
    resolve,
    sha256sum,
    verify,
)
from skunet.errors import SkunetError


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sha256sum_matches_hashlib(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"x" * (3 << 20) + b"tail")
    assert sha256sum(f) == sha(f)


def test_verify_rejects_wrong_checksum(tmp_path):
    f = tmp_path / "DRIVE.zip"
    f.write_bytes(b"not the archive")
    with pytest.raises(SkunetError, match=r"DRIVE.zip: checksum mismatch"):
        verify(f, "0" * 64)


def test_first_verified_source_wins_and_mismatch_is_never_a_fallback(tmp_path, monkeypatch):
    mirror, local = tmp_path / "mirror", tmp_path / "data" / "downloads"
    mirror.mkdir()
    local.mkdir(parents=True)
    good = fake_drive_zip(local / "DRIVE.zip")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SKUNET_DATA_MIRROR", str(mirror))
    sources = [Source("mirror", (ArchiveFile("DRIVE.zip", sha(good)),)),
               Source("local", (ArchiveFile("DRIVE.zip", sha(good)),))]

    # the mirror lacks the archive: the local copy is used
    [(path, _)] = resolve(sources, "help", allow_network=False)
    assert path == Path("data/downloads/DRIVE.zip")

    # the mirror holds a corrupt copy: an error, although a good local copy exists
    (mirror / "DRIVE.zip").write_bytes(good.read_bytes()[:-100])
    with pytest.raises(SkunetError, match="checksum mismatch"):
        resolve(sources, "help", allow_network=False)


def test_no_source_names_where_to_get_the_archive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SKUNET_DATA_MIRROR", raising=False)
    sources = [Source("mirror", (ArchiveFile("DRIVE.zip", "0" * 64),))]
    with pytest.raises(SkunetError, match="SKUNET_DATA_MIRROR is not set.*grand-challenge"):
        resolve(sources, "DRIVE needs registration at https://drive.grand-challenge.org/", allow_network=False)


@pytest.mark.parametrize("entry", ["../evil.txt", "/etc/evil.txt", "DRIVE/../../evil.txt", "C:/evil.txt"])
def test_entry_escaping_the_folder_is_refused(tmp_path, entry):
    archive = fake_drive_zip(tmp_path / "DRIVE.zip", extra={entry: b"x"})
    with pytest.raises(SkunetError, match="would escape the extraction folder"):
        list(archive_members(archive))


def test_truncated_zip_is_a_clear_error(tmp_path):
    archive = fake_drive_zip(tmp_path / "DRIVE.zip")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(SkunetError, match="corrupt or truncated zip"):
        list(archive_members(archive))


def test_flipped_byte_fails_the_crc(tmp_path):
    archive = fake_drive_zip(tmp_path / "DRIVE.zip")
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("DRIVE/test/images/01_test.tif")
    data = bytearray(archive.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # inside the stored data
    archive.write_bytes(bytes(data))
    with pytest.raises(SkunetError, match="corrupt or truncated zip"):
        list(archive_members(archive))


def _project(tmp_path: Path, mirror: Path) -> Path:
    """A project folder with params.yaml whose DRIVE checksum is that of `mirror`/DRIVE.zip."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    digest = sha(mirror / "DRIVE.zip")
    for source in params["download"]["drive"]["sources"][:2]:
        source["files"][0]["sha256"] = digest
    params["download"]["drive"]["sources"] = params["download"]["drive"]["sources"][:2]
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    return project


def test_download_stage_on_corrupt_mirror_leaves_no_output(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    fake_drive_zip(mirror / "DRIVE.zip", size=NATIVE_SIZE["drive"])  # the stage checks the real size
    project = _project(tmp_path, mirror)
    ok = run_stage("download.py", "drive", cwd=project, env={"SKUNET_DATA_MIRROR": str(mirror)})
    assert ok.returncode == 0, ok.stderr
    assert len(list((project / "data/raw/drive/images").glob("*.png"))) == 40
    shutil.rmtree(project / "data")

    (mirror / "DRIVE.zip").write_bytes(b"garbage" + (mirror / "DRIVE.zip").read_bytes()[7:])
    bad = run_stage("download.py", "drive", cwd=project, env={"SKUNET_DATA_MIRROR": str(mirror)})
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0, bad.stderr  # one line
    assert "checksum mismatch" in bad.stderr and "DRIVE.zip" in bad.stderr
    assert not (project / "data" / "raw" / "drive").exists()
    assert not any((project / "data" / "raw").glob("*")) if (project / "data" / "raw").exists() else True


def test_download_stage_rejects_unknown_dataset(tmp_path):
    result = run_stage("download.py", "stare", cwd=ROOT)
    assert result.returncode == 2
    assert "unknown dataset 'stare' (allowed: drive, chase)" in result.stderr


def test_fetch_verifies_before_moving_into_place(tmp_path, monkeypatch):
    """A download (here from a file:// URL) lands in data/downloads/ only when its checksum holds."""
    from skunet.data.sources import fetch

    served = fake_drive_zip(tmp_path / "served.zip")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SkunetError, match=r"served.zip: what it sent \(\d+ bytes, sha256 \w+\.\.\.\) is not DRIVE.zip"
                                          r" .*put it in data/downloads/$"):
        fetch(ArchiveFile("DRIVE.zip", "0" * 64, served.as_uri()))
    assert not list((tmp_path / "data" / "downloads").iterdir())  # nothing partial left
    path = fetch(ArchiveFile("DRIVE.zip", sha(served), served.as_uri()))
    assert path.read_bytes() == served.read_bytes()


def _declare_size(archive: Path, entry: str, size: int) -> None:
    """Make the central directory declare `size` uncompressed bytes for `entry`, as a damaged or
    hostile archive may, without writing them."""
    with zipfile.ZipFile(archive) as zf:
        offset, count = zf.start_dir, len(zf.infolist())
    data = bytearray(archive.read_bytes())
    for _ in range(count):
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, offset + 28)
        if data[offset + 46 : offset + 46 + name_length].decode() == entry:
            struct.pack_into("<I", data, offset + 24, size)  # the uncompressed size field
            archive.write_bytes(bytes(data))
            return
        offset += 46 + name_length + extra_length + comment_length
    raise AssertionError(f"{entry} not in {archive}")


def test_an_entry_declaring_a_huge_size_is_refused_before_it_is_read(tmp_path, monkeypatch):
    entry = "DRIVE/training/images/21_training.tif"
    archive = fake_drive_zip(tmp_path / "DRIVE.zip")
    _declare_size(archive, entry, 3 << 30)  # only the header says 3 GiB: nothing large is written
    read, real_read = [], zipfile.ZipFile.read

    def spy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, *args):
        read.append(info.filename)
        return real_read(zf, info, *args)

    monkeypatch.setattr(zipfile.ZipFile, "read", spy)
    with pytest.raises(SkunetError) as err:
        read_archives("drive", [archive], native_size=FAKE_SIZE)
    text = str(err.value)
    assert text.startswith(f"{archive}: entry '{entry}' declares {3 << 30} bytes") and "\n" not in text
    assert MAX_ENTRY_BYTES < 3 << 30 and read and entry not in read


def test_entries_the_dataset_does_not_need_are_not_read(tmp_path):
    entry = "DRIVE/extras/scan.raw"
    archive = fake_drive_zip(tmp_path / "DRIVE.zip", extra={entry: b"\0" * 1000})
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(entry)
    data = bytearray(archive.read_bytes())
    data[info.header_offset + 30 + len(entry) + 500] ^= 0xFF  # read, it would fail its CRC
    archive.write_bytes(bytes(data))
    _declare_size(archive, entry, 3 << 30)  # and be refused for its size
    assert len(read_archives("drive", [archive], native_size=FAKE_SIZE).samples) == 40


def test_the_entry_size_limit_is_far_above_the_real_archives(mirror):
    largest = max(info.file_size for name in ("DRIVE.zip", "CHASEDB1.zip")
                  for info in zipfile.ZipFile(mirror / name).infolist())
    assert largest * 50 < MAX_ENTRY_BYTES


def test_a_transfer_cut_short_is_said_and_leaves_nothing(tmp_path, monkeypatch):
    """A server that announces more bytes than it sends: the next source is tried (none here), and
    the one line says what was looked for, with no temporary file named or left behind."""
    import http.server
    import threading

    class CutShort(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), CutShort)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SKUNET_DATA_MIRROR", raising=False)
    url = f"http://127.0.0.1:{server.server_port}/DRIVE.zip"
    try:
        with pytest.raises(SkunetError, match=r"^no archive found \(SKUNET_DATA_MIRROR is not set; nothing in"
                                              r" data/downloads/, download failed\): get it$"):
            resolve([Source("url", (ArchiveFile("DRIVE.zip", "0" * 64, url),))], "get it")
    finally:
        server.shutdown()
    assert not list((tmp_path / "data" / "downloads").iterdir())


@pytest.mark.parametrize(("value", "said"), [
    (None, "SKUNET_DATA_MIRROR is not set"), ("", "SKUNET_DATA_MIRROR is empty"),
    ("absent", "SKUNET_DATA_MIRROR={}: no such folder"),
    ("DRIVE.zip", "SKUNET_DATA_MIRROR={}: a file, not the folder that holds the archives"),
    (".", "SKUNET_DATA_MIRROR={}: no CHASEDB1.zip in it"),
])
def test_no_archive_says_what_the_mirror_variable_holds(tmp_path, monkeypatch, value, said):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "DRIVE.zip").write_bytes(b"")
    if value is None:
        monkeypatch.delenv("SKUNET_DATA_MIRROR", raising=False)
    else:
        value = value if value in ("", ".") else str(tmp_path / value)
        monkeypatch.setenv("SKUNET_DATA_MIRROR", value)
    with pytest.raises(SkunetError) as err:
        resolve([Source("mirror", (ArchiveFile("CHASEDB1.zip", "0" * 64),))], "help", allow_network=False)
    assert f"({said.format(value)};" in str(err.value)
