import errno
import hashlib
import http.server
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import core.download
from core.cli import main
from core.cli.common import Terminated, sigterm_unwinds
from core.data import LANGUAGES, load_dataset
from core.download import EXPECTED_SHA256, MAX_MEMBER_BYTES, DownloadError, download_dataset
from tests.file_limits import file_size_limit


def test_embedded_hashes_cover_every_language() -> None:
    assert set(EXPECTED_SHA256) == set(LANGUAGES)


def test_embedded_hashes_match_the_shared_list(real_data_dir: Path) -> None:
    listing = real_data_dir.parent / "names.sha256"
    if not listing.is_file():
        pytest.skip("no names.sha256 beside the dataset")
    published = {line.split()[1].removesuffix(".txt"): line.split()[0] for line in listing.read_text().splitlines()}
    assert published == EXPECTED_SHA256


def zip_of(folder: Path, prefix: str = "data/names/") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for path in sorted(folder.glob("*.txt")):
            bundle.writestr(prefix + path.name, path.read_bytes())
    return buffer.getvalue()


class StaticServer:
    """A loopback HTTP server that answers every GET with ``body``, or a chunk of it cut off mid-way."""

    def __init__(self) -> None:
        self.body = b""
        self.cut_chunk_at: int | None = None
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
                owner.requests += 1
                if owner.cut_chunk_at is not None:
                    # Announce the whole body as one chunk, send part of it, and hang up.
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(f"{len(owner.body):x}\r\n".encode() + owner.body[: owner.cut_chunk_at])
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/data.zip"


@pytest.fixture
def archive_server() -> Iterator[StaticServer]:
    static = StaticServer()
    # serve_forever checks for shutdown() every poll_interval: the default half second was most of each test.
    thread = threading.Thread(target=static.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield static
    static.server.shutdown()
    static.server.server_close()


def test_downloads_and_verifies_the_official_archive(
    real_data_dir: Path, archive_server: StaticServer, tmp_path: Path
) -> None:
    archive_server.body = zip_of(real_data_dir)
    target = download_dataset(tmp_path / "downloaded", url=archive_server.url)
    for language in LANGUAGES:
        assert hashlib.sha256((target / f"{language}.txt").read_bytes()).hexdigest() == EXPECTED_SHA256[language]
    assert load_dataset(target).audit.raw_lines == 20074


def test_tampered_archive_writes_nothing(tiny_data_dir: Path, archive_server: StaticServer, tmp_path: Path) -> None:
    archive_server.body = zip_of(tiny_data_dir)
    with pytest.raises(DownloadError, match="failed verification"):
        download_dataset(tmp_path / "downloaded", url=archive_server.url)
    assert not (tmp_path / "downloaded").exists()


@pytest.mark.parametrize("language", ["Chinese", "Vietnamese"])  # not only the first file is checked
def test_one_altered_file_among_real_ones_writes_nothing(
    language: str, real_data_dir: Path, archive_server: StaticServer, tmp_path: Path
) -> None:
    altered = tmp_path / "altered"
    shutil.copytree(real_data_dir, altered)
    with (altered / f"{language}.txt").open("ab") as handle:
        handle.write(b"\n")  # one byte more
    archive_server.body = zip_of(altered)
    with pytest.raises(DownloadError, match=f"{language}.txt failed verification"):
        download_dataset(tmp_path / "downloaded", url=archive_server.url)
    assert not (tmp_path / "downloaded").exists()


def test_not_a_zip_is_a_clear_error(archive_server: StaticServer, tmp_path: Path) -> None:
    archive_server.body = b"<html>captive portal</html>"
    with pytest.raises(DownloadError, match="not a valid zip"):
        download_dataset(tmp_path / "downloaded", url=archive_server.url)


def test_offline_is_a_clear_error(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback is closed here, as the internet is for an offline user.
    with pytest.raises(DownloadError, match="could not download .*copy the 18"):
        download_dataset(tmp_path / "downloaded", url="http://127.0.0.1:9/data.zip", timeout=5)


def test_a_cut_off_download_is_a_clear_error(tiny_data_dir: Path, archive_server: StaticServer, tmp_path: Path) -> None:
    archive_server.body = zip_of(tiny_data_dir)
    archive_server.cut_chunk_at = 100
    with pytest.raises(DownloadError, match="could not download .*broke off.*IncompleteRead"):
        download_dataset(tmp_path / "downloaded", url=archive_server.url, timeout=5)
    assert not (tmp_path / "downloaded").exists()


# A whole archive fails as it is written; a body smaller than the file's buffer only as the file is closed.
@pytest.mark.parametrize("small", [False, True])
def test_a_full_temporary_folder_is_named_not_blamed_on_the_network(
    tiny_data_dir: Path, archive_server: StaticServer, tmp_path: Path, small: bool
) -> None:
    archive_server.body = b"PK" * 500 if small else zip_of(tiny_data_dir)
    with file_size_limit(100), pytest.raises(DownloadError) as raised:  # the body is larger: as on a full disk
        download_dataset(tmp_path / "downloaded", url=archive_server.url, timeout=5)
    message = str(raised.value)
    folder = re.escape(os.path.join(tempfile.gettempdir(), "nameorigin-download-"))
    assert re.match(rf"cannot write the download to {folder}\w+ \(the temporary folder; TMPDIR sets it\): ", message)
    assert os.strerror(errno.EFBIG) in message and "internet" not in message
    assert not (tmp_path / "downloaded").exists()


def test_a_target_under_a_file_fails_before_downloading(archive_server: StaticServer, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("keep me\n")
    with pytest.raises(DownloadError, match="afile is not a folder"):
        download_dataset(tmp_path / "afile" / "names", url=archive_server.url)
    assert (tmp_path / "afile").read_text() == "keep me\n"
    assert archive_server.requests == 0


def test_a_language_folder_in_the_target_fails_before_downloading(archive_server: StaticServer, tmp_path: Path) -> None:
    (tmp_path / "names" / "Greek.txt").mkdir(parents=True)
    with pytest.raises(DownloadError, match="Greek.txt is a folder"):
        download_dataset(tmp_path / "names", url=archive_server.url)
    assert archive_server.requests == 0


def damaged_member_zip(real_data_dir: Path) -> bytes:
    """A deflated archive of the real files whose first member's compressed data has 8 bytes inverted."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(real_data_dir.glob("*.txt")):
            bundle.writestr("data/names/" + path.name, path.read_bytes())
    damaged = bytearray(buffer.getvalue())
    start = 30 + len("data/names/Arabic.txt") + 60  # past the local header, into the deflate stream
    damaged[start : start + 8] = bytes(byte ^ 0xFF for byte in damaged[start : start + 8])
    return bytes(damaged)


def test_a_damaged_archive_is_a_clear_error(real_data_dir: Path, archive_server: StaticServer, tmp_path: Path) -> None:
    archive_server.body = damaged_member_zip(real_data_dir)
    with pytest.raises(zlib.error):  # what zipfile itself raises for this damage
        zipfile.ZipFile(io.BytesIO(archive_server.body)).read("data/names/Arabic.txt")
    with pytest.raises(DownloadError, match="not a valid zip archive: Error -3"):
        download_dataset(tmp_path / "downloaded", url=archive_server.url)
    assert not (tmp_path / "downloaded").exists()


def test_a_member_too_large_to_be_a_language_file_is_refused_unread(
    archive_server: StaticServer, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("data/names/Arabic.txt", b"\n" * (MAX_MEMBER_BYTES + 1))  # deflates to about 10 KB
    archive_server.body = buffer.getvalue()
    with pytest.raises(DownloadError, match="Arabic.txt unpacks to 10,485,761 bytes"):
        download_dataset(tmp_path / "downloaded", url=archive_server.url)


def test_the_download_command_stops_quietly_when_the_reader_has_left(
    real_data_dir: Path, archive_server: StaticServer, tmp_path: Path
) -> None:
    archive_server.body = zip_of(real_data_dir)
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -0`
    target = tmp_path / "downloaded"
    command = [sys.executable, "-m", "core.cli", "data", "download", "--dir", str(target), "--url", archive_server.url]
    try:
        result = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 141 and not result.stderr, result.stderr.decode()
    assert load_dataset(target).audit.raw_lines == 20074  # the reader left after the work was done


def test_a_download_larger_than_any_archive_is_cut_off(
    archive_server: StaticServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.download.MAX_ARCHIVE_BYTES", 1000)
    archive_server.body = b"\0" * 1001  # as from a server that never stops sending
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    with pytest.raises(DownloadError, match="the download exceeds 1,000 bytes"):
        download_dataset(tmp_path / "downloaded", url=archive_server.url)
    assert not (tmp_path / "downloaded").exists()
    assert list((tmp_path / "scratch").iterdir()) == []  # the partial archive is gone too


@pytest.mark.parametrize("url", ["foo", "http://[::1/data.zip"])
def test_a_malformed_url_is_a_clear_error(url: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="cannot download"):
        download_dataset(tmp_path / "downloaded", url=url)


def test_a_folder_that_already_holds_the_verified_files_needs_no_download(
    real_data_dir: Path, archive_server: StaticServer, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(real_data_dir, copy)
    assert download_dataset(copy, url="http://127.0.0.1:9/data.zip", timeout=5) == copy  # offline, yet fine
    with (copy / "Greek.txt").open("ab") as handle:
        handle.write(b"\n")  # one file no longer matches: the archive is fetched to replace it
    # Offline, the error names the file that sent it downloading; it had said only to copy the files by hand.
    with pytest.raises(DownloadError, match=r"could not download .* Greek\.txt differs from the published file"):
        download_dataset(copy, url="http://127.0.0.1:9/data.zip", timeout=5)
    archive_server.body = zip_of(real_data_dir)
    download_dataset(copy, url=archive_server.url)
    assert archive_server.requests == 1
    assert hashlib.sha256((copy / "Greek.txt").read_bytes()).hexdigest() == EXPECTED_SHA256["Greek"]


@pytest.fixture
def sigterms() -> Iterator[list[int]]:
    """SIGTERMs that reach the test's own handler: without the CLI's, the signal would end pytest itself."""
    caught: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    yield caught
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_during_a_download_leaves_no_temporary_folder(
    sigterms: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def half_fetched_then_stopped(url: str, destination: Path, timeout: float) -> None:
        destination.write_bytes(b"PK\x03\x04 first bytes")
        signal.raise_signal(signal.SIGTERM)  # docker stop, mid-download

    monkeypatch.setattr(core.download, "_fetch", half_fetched_then_stopped)
    status = main(["data", "download", "--dir", str(tmp_path / "names")])
    assert status == 143
    assert list(scratch.iterdir()) == [] and not (tmp_path / "names").exists()
    assert sigterms == []  # the command's handler had it, and then gave the test's back
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL


def test_sigterm_while_writing_the_files_leaves_no_partial_file(
    sigterms: list[int],
    real_data_dir: Path,
    archive_server: StaticServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    archive_server.body = zip_of(real_data_dir)
    moved: list[str] = []
    real_replace = os.replace

    def replace_then_stopped(source: Path, destination: Path) -> None:
        real_replace(source, destination)
        moved.append(Path(destination).name)
        signal.raise_signal(signal.SIGTERM)  # after the first file is in place, the others still partial

    monkeypatch.setattr(core.download.os, "replace", replace_then_stopped)
    target = tmp_path / "names"
    assert main(["data", "download", "--dir", str(target), "--url", archive_server.url]) == 143
    assert sorted(path.name for path in target.iterdir()) == moved == ["Arabic.txt"]


def test_a_second_sigterm_does_not_break_off_the_clean_up(sigterms: list[int]) -> None:
    cleaned: list[str] = []
    with pytest.raises(Terminated), sigterm_unwinds():
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            signal.raise_signal(signal.SIGTERM)  # docker stop sent twice, while the first is being cleaned up after
            cleaned.append("temporary files")
    assert cleaned == ["temporary files"] and sigterms == []
