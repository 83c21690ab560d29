"""Downloads of data sets and weights: pinned sha256, atomic, resumable, safe to unpack.

* :func:`download` fetches a URL into the cache (``$XMODAL_CACHE/downloads``) through a
  ``.part`` file, resumes an interrupted ``.part`` with an HTTP ``Range`` request,
  checks the sha256 and only then renames it into place. A corrupt download is
  deleted, never left in the cache.
* :func:`extract` unpacks tar and zip archives refusing absolute paths, ``..``
  components and links that point out of the target (tarfile's ``"data"`` filter
  plus the same checks for zip members), and unpacks into a temporary folder first.
* Offline, or when the server is unreachable, :class:`DownloadError` says how to
  use a local copy instead (``XMODAL_DATA`` or a local weights file).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from xmodal.data.paths import cache_root
from xmodal.errors import DownloadError

CHUNK = 1 << 20
OFFLINE_HINT = (
    "If this machine is offline, download the file elsewhere and either put the data set "
    "under the folder XMODAL_DATA points to (export XMODAL_DATA=/path/to/data) or pass a "
    "local weights file (--model.weights /path/to/weights.safetensors)."
)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    sha256: str,
    filename: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``url`` once into the cache and return the verified file.

    Args:
        url: ``http(s)://`` or ``file://`` address.
        sha256: the expected hex digest; required, so nothing unverified is used.
        filename: name in the cache (default: the URL's last path component).
        cache_dir: folder (default ``$XMODAL_CACHE/downloads``).
        timeout: seconds to wait for the server.

    Raises:
        DownloadError: unreachable server (with the offline hint), an HTTP error, or
            a sha256 mismatch (the partial file is removed).
    """
    if not sha256 or len(sha256) != 64:
        raise DownloadError(f"download of {url} needs a pinned sha256 (64 hex digits)")
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    name = filename or PurePosixPath(urllib.parse.urlparse(url).path).name or "download"
    if "/" in name or name in (".", ".."):
        raise DownloadError(f"bad file name {name!r} for {url}")
    target = folder / name
    if target.is_file():
        if sha256_of(target) == sha256.lower():
            return target
        target.unlink()  # stale or tampered: fetch again
    part = folder / (name + ".part")
    try:
        _fetch(url, part, timeout)
    except (urllib.error.URLError, OSError) as exc:
        status = getattr(exc, "code", None)
        if status is not None:
            part.unlink(missing_ok=True)
            raise DownloadError(f"download of {url} failed: HTTP {status}") from None
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot download {url} ({reason}). {OFFLINE_HINT}") from None
    actual = sha256_of(part)
    if actual != sha256.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"download of {url} is corrupt: sha256 {actual} but expected {sha256.lower()}; "
            "the file was deleted, nothing was kept"
        )
    os.replace(part, target)
    return target


def _fetch(url: str, part: Path, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (a Range request when part exists)."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url)
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (sha256 checked)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # asked past the end: the part is already complete
            return
        raise
    with response:
        resumed = have and getattr(response, "status", 200) == 206
        mode = "ab" if resumed else "wb"  # a server that ignores Range sends it all again
        with part.open(mode) as out:
            shutil.copyfileobj(response, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())


# -- archives -----------------------------------------------------------------------------


def _check_member_name(name: str, archive: Path) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DownloadError(f"{archive}: refusing member {name!r}: absolute path")
    if ".." in path.parts:
        raise DownloadError(f"{archive}: refusing member {name!r}: '..' escapes the target folder")


def extract(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Unpack a tar (any compression) or zip archive into ``target``, safely.

    Every member is checked before anything is written; the archive is unpacked in a
    temporary folder beside ``target`` and moved into place, so a refused or broken
    archive leaves no half-extracted tree.

    Raises:
        DownloadError: a member with an absolute path, a ``..`` component, or a link
            leading out of the target; or a file that is no supported archive.
    """
    archive, target = Path(archive), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        if tarfile.is_tarfile(archive):
            _extract_tar(archive, staging)
        elif zipfile.is_zipfile(archive):
            _extract_zip(archive, staging)
        else:
            raise DownloadError(f"{archive} is not a tar or zip archive")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _extract_tar(archive: Path, staging: Path) -> None:
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            _check_member_name(member.name, archive)
            if member.issym() or member.islnk():
                link = PurePosixPath(member.linkname)
                base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
                if link.is_absolute() or _escapes(base / link):
                    raise DownloadError(f"{archive}: refusing link {member.name!r} -> "
                                        f"{member.linkname!r}: it points out of the target folder")
        try:
            tar.extractall(staging, members=members, filter="data")
        except tarfile.FilterError as exc:  # the stdlib's own checks (device files, ...)
            raise DownloadError(f"{archive}: refusing to extract: {exc}") from None


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return True
    return False


def _extract_zip(archive: Path, staging: Path) -> None:
    with zipfile.ZipFile(archive) as bundle:
        infos = bundle.infolist()
        for info in infos:
            _check_member_name(info.filename, archive)
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:  # a symbolic link stored by Info-ZIP
                raise DownloadError(f"{archive}: refusing link {info.filename!r}: zip links are "
                                    "not extracted")
        root = staging.resolve()
        for info in infos:
            destination = (staging / info.filename).resolve()
            if root not in destination.parents and destination != root:
                raise DownloadError(f"{archive}: refusing member {info.filename!r}: outside the target")
            bundle.extract(info, staging)
