"""Fetch the official surnames archive and verify every file against known hashes."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import IO

from core.data import LANGUAGES
from core.paths import unwritable_reason

logger = logging.getLogger(__name__)

ARCHIVE_URL = "https://download.pytorch.org/tutorial/data.zip"
ARCHIVE_FOLDER = "data/names/"
# The largest language file (Russian.txt) is about 100 KB, the whole archive about 2.9 MB.
MAX_MEMBER_BYTES = 10 * 1024 * 1024
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024  # a wrong or hostile server must not fill the disk

# SHA-256 of each file as published in the official archive.
EXPECTED_SHA256: dict[str, str] = {
    "Arabic": "6f424a8dbe51cbbbabab7a57d38b617210125e4e3991f3c657cb79b8f104bafc",
    "Chinese": "49263ef55a8cb1740e841d65cad8214b2f9b5b869bc534c811746422496fa91e",
    "Czech": "145bbbd6d0816578f03388e92c264d39ef1c60df920b081d371fa5c5cc055a8e",
    "Dutch": "924f32b635170eae561f84538632138fc07d4c8bbd70ba3fb980de1ecc4d2af3",
    "English": "9cca037066d3d5989e24bc01801416162de506b5e28e15b7c092a47905d29bf2",
    "French": "81e65b36c60ed5b89a17422f6edcadbb89546f38ad69e960e64e7ba682012a95",
    "German": "7449cd590b97a733e18d613a4155decd77ec35dc5f8aadd7a82204dce4f051db",
    "Greek": "3555b5186de7f401e6d991b088e9e644ca3099116477818c25ab5793801389e6",
    "Irish": "cf8c7013256252a88d2503127b87282a11f21b2ff6db1bded68834c19a1ec058",
    "Italian": "f88414c27d0606a11a678b4859277828c2565d6cc4d9ee932deef6e94f3b35e4",
    "Japanese": "e0e717e114fec3e7eade4d9dabe0067c475f43147e36a22b47902ee76ad9e67f",
    "Korean": "cd54221ccb362a6cba4c78828838cf3268a0e59744767a37cf6ec4b74036b136",
    "Polish": "45bab898af2f60ed3a728bbf6980e28821011a7caa53227553b5785903a40826",
    "Portuguese": "50a8735f41f4f73757c8ce5b16cb0275cd86b2b214bcbc8c9805f508cb131c53",
    "Russian": "43b3e64ce351f77f1ac9e0cdf7566012d127f4371875fd25208845b5c9d6f7c3",
    "Scottish": "78d0252711d87d948ea86fe34826c51d2d794a8e52d15b5d6f7b6244d45d62dd",
    "Spanish": "1bcb462ed3316756a85781d68232bddae04498fdddd5d9219c53fd1fbdeba7a7",
    "Vietnamese": "4761c0de374ebdfd7dea7faa6fbac707d96cad9a6fc91d3626c462cbd08b6c76",
}


class DownloadError(Exception):
    """The archive could not be fetched, read or verified; nothing was written to the target."""


def _copy_at_most(response: IO[bytes], out: IO[bytes], limit: int) -> None:
    """Copy ``response`` to ``out``; ``DownloadError`` as soon as it exceeds ``limit`` bytes."""
    copied = 0
    while chunk := response.read(1 << 16):
        copied += len(chunk)
        if copied > limit:
            raise DownloadError(f"the download exceeds {limit:,} bytes; the official archive is about 2.9 MB")
        try:
            out.write(chunk)
        except OSError as exc:  # this machine's fault (a full disk), not the network's
            raise _unwritable(Path(out.name), exc) from exc


def _unwritable(destination: Path, exc: OSError) -> DownloadError:
    return DownloadError(
        f"cannot write the download to {destination.parent} (the temporary folder; TMPDIR sets it): "
        f"{exc.strerror or exc}"
    )


def _fetch(url: str, destination: Path, timeout: float) -> None:
    try:
        with destination.open("wb") as out:
            _download_into(out, url, timeout)
    except OSError as exc:  # opening or flushing the file; a failed write is turned into a DownloadError on the spot
        raise _unwritable(destination, exc) from exc


def _download_into(out: IO[bytes], url: str, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            _copy_at_most(response, out, MAX_ARCHIVE_BYTES)
    except ValueError as exc:  # urllib's word for a malformed URL
        raise DownloadError(f"cannot download {url!r}: {exc}") from exc
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(exc, http.client.HTTPException):  # e.g. IncompleteRead: the server hung up mid-archive
            reason = f"the transfer broke off ({exc!r})"
        raise DownloadError(
            f"could not download {url}: {reason}. Without internet, copy the 18 <Language>.txt files "
            "into the folder by hand, or point NAMES_DATA_DIR at an existing copy."
        ) from exc


def _extract_verified(archive: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(archive) as bundle:
            contents = {}
            for language in LANGUAGES:
                member = f"{ARCHIVE_FOLDER}{language}.txt"
                try:
                    size = bundle.getinfo(member).file_size
                except KeyError as exc:
                    raise DownloadError(f"the archive has no {member}") from exc
                if size > MAX_MEMBER_BYTES:  # checked before reading: a forged size could exhaust memory
                    raise DownloadError(f"{member} unpacks to {size:,} bytes; no language file is that large")
                contents[language] = bundle.read(member)
    # A damaged archive fails in zlib or as a short stream; an encrypted or exotic one in zipfile itself.
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise DownloadError(f"the downloaded file is not a valid zip archive: {exc}") from exc
    for language, data in contents.items():
        digest = hashlib.sha256(data).hexdigest()
        if digest != EXPECTED_SHA256[language]:
            raise DownloadError(
                f"{language}.txt failed verification: SHA-256 {digest}, expected {EXPECTED_SHA256[language]}"
            )
    return contents


def _unverified_files(target: Path) -> tuple[list[str], list[str]]:
    """What keeps ``target`` from holding the 18 published files: the files missing, and what is wrong
    with each of the others that is not the published one."""
    missing, wrong = [], []
    for language, expected in EXPECTED_SHA256.items():
        path = target / f"{language}.txt"
        try:
            if not path.is_file():
                missing.append(path.name)
            elif path.stat().st_size > MAX_MEMBER_BYTES:
                wrong.append(f"{path.name} is too large")
            elif (digest := hashlib.sha256(path.read_bytes()).hexdigest()) != expected:
                wrong.append(f"{path.name} differs from the published file (SHA-256 {digest[:12]}…)")
        except OSError as exc:  # unreadable: downloading will say why it cannot be replaced, if it cannot
            wrong.append(f"{path.name} cannot be read ({exc.strerror or exc})")
    return missing, wrong


def _check_target(target: Path) -> None:
    """Fail before downloading if ``target`` cannot become a folder of files we can write."""
    reason = unwritable_reason(target)
    if reason is not None:
        raise DownloadError(f"dataset folder {target} cannot be used: {reason}")
    folders = [name for language in LANGUAGES if (name := target / f"{language}.txt").is_dir()]
    if folders:
        raise DownloadError(f"{folders[0]} is a folder; move it away so the dataset file can take its place")


def _write_all(target: Path, contents: dict[str, bytes]) -> None:
    """Write every file beside its final name first, then move them all into place."""
    partials = {language: target / f".{language}.txt.partial" for language in contents}
    try:
        target.mkdir(parents=True, exist_ok=True)
        for language, data in contents.items():
            partials[language].write_bytes(data)
        for language, partial in partials.items():
            os.replace(partial, target / f"{language}.txt")
    except BaseException as exc:  # a full disk, or the run stopped: no partial file stays behind
        for partial in partials.values():
            with contextlib.suppress(OSError):
                partial.unlink()
        if isinstance(exc, OSError):
            raise DownloadError(f"could not write the dataset into {target}: {exc.strerror or exc}") from exc
        raise


def download_dataset(target_dir: str | os.PathLike[str], url: str = ARCHIVE_URL, timeout: float = 60.0) -> Path:
    """Download the archive, verify all 18 files, then write them into ``target_dir``.

    Every file is verified before any is written, and each is written atomically, so a
    failed download never leaves a half-updated dataset behind. A folder that already holds
    the 18 verified files is left as it is, with no download.
    """
    target = Path(target_dir)
    missing, wrong = _unverified_files(target)
    if not missing and not wrong:  # nothing to fetch, so it works offline too
        logger.info("%s already holds the 18 verified files", target)
        return target
    _check_target(target)
    with tempfile.TemporaryDirectory(prefix="nameorigin-download-") as scratch:
        archive = Path(scratch) / "data.zip"
        logger.info("downloading %s", url)
        try:
            _fetch(url, archive, timeout)
        except DownloadError as exc:
            if len(missing) == len(LANGUAGES):  # an empty folder: the advice to copy the files is all there is
                raise
            # Files copied by hand that fail verification (line ends converted, say) are why it had to download.
            problems = wrong + [f"{name} is missing" for name in missing]
            listed = "; ".join(problems[:3]) + ("; …" if len(problems) > 3 else "")
            raise DownloadError(f"{exc} The folder does not hold the published files: {listed}") from exc
        contents = _extract_verified(archive)
    _write_all(target, contents)
    logger.info("wrote %d verified files to %s", len(contents), target)
    return target
