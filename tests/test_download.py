"""Downloads from a real HTTP server on 127.0.0.1: sha256, resume, safe extraction."""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from xmodal.download import download, extract
from xmodal.errors import DownloadError


class RangeHandler(SimpleHTTPRequestHandler):
    """The stdlib file server plus ``Range: bytes=N-`` (206 Partial Content)."""

    requests: list[str | None] = []

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def send_head(self):  # noqa: ANN201
        wanted = self.headers.get("Range")
        type(self).requests.append(wanted)
        path = Path(self.translate_path(self.path))
        if not wanted or not path.is_file():
            return super().send_head()
        start = int(wanted.split("=", 1)[1].split("-", 1)[0])
        data = path.read_bytes()
        if start >= len(data):
            self.send_error(416)
            return None
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        return io.BytesIO(data[start:])


@pytest.fixture()
def server(tmp_path: Path):  # noqa: ANN201
    root = tmp_path / "served"
    root.mkdir()
    RangeHandler.requests = []
    handler = functools.partial(RangeHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_bytes(members: list[tarfile.TarInfo], payloads: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info in members:
            data = payloads.get(info.name)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def test_download_verifies_and_caches(server, tmp_path) -> None:
    root, url = server
    payload = b"weights" * 1000
    (root / "w.bin").write_bytes(payload)
    cache = tmp_path / "cache"
    path = download(f"{url}/w.bin", sha(payload), cache_dir=cache)
    assert path.read_bytes() == payload
    (root / "w.bin").unlink()  # a second call is served from the cache
    assert download(f"{url}/w.bin", sha(payload), cache_dir=cache) == path


def test_corrupt_download_fails_sha256_and_leaves_nothing(server, tmp_path) -> None:
    root, url = server
    (root / "data.tar.gz").write_bytes(b"corrupted bytes, not what was pinned")
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="sha256"):
        download(f"{url}/data.tar.gz", sha(b"the real archive"), cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_interrupted_download_resumes_with_range(server, tmp_path) -> None:
    root, url = server
    payload = bytes(range(256)) * 4096  # 1 MiB
    (root / "big.bin").write_bytes(payload)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "big.bin.part").write_bytes(payload[:300_000])  # what a killed run left
    path = download(f"{url}/big.bin", sha(payload), cache_dir=cache)
    assert path.read_bytes() == payload
    assert RangeHandler.requests == ["bytes=300000-"]
    assert not (cache / "big.bin.part").exists()


def test_unreachable_server_explains_the_offline_route(tmp_path) -> None:
    with pytest.raises(DownloadError) as info:
        download("http://127.0.0.1:9/nothing.tar", "0" * 64, cache_dir=tmp_path, timeout=2)
    assert "XMODAL_DATA" in str(info.value) and "--model.weights" in str(info.value)


def test_unpinned_download_is_refused(tmp_path) -> None:
    with pytest.raises(DownloadError, match="sha256"):
        download("http://127.0.0.1:9/x", "", cache_dir=tmp_path)


def _serve_and_fetch(server, tmp_path: Path, name: str, data: bytes) -> Path:  # noqa: ANN001
    root, url = server
    (root / name).write_bytes(data)
    return download(f"{url}/{name}", sha(data), cache_dir=tmp_path / "cache")


def test_tar_with_dotdot_member_is_refused(server, tmp_path) -> None:
    evil = tarfile.TarInfo("../../escaped.txt")
    good = tarfile.TarInfo("ok.txt")
    archive = _serve_and_fetch(server, tmp_path, "dotdot.tar.gz",
                               tar_bytes([good, evil], {"ok.txt": b"ok", "../../escaped.txt": b"pwn"}))
    target = tmp_path / "out" / "data"
    with pytest.raises(DownloadError, match=r"\.\."):
        extract(archive, target)
    assert not target.exists()
    assert not list(tmp_path.rglob("escaped.txt"))


def test_tar_with_symlink_escape_is_refused(server, tmp_path) -> None:
    link = tarfile.TarInfo("data/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../../etc"
    through = tarfile.TarInfo("data/link/passwd")  # would write through the link
    archive = _serve_and_fetch(server, tmp_path, "symlink.tar.gz",
                               tar_bytes([link, through], {"data/link/passwd": b"pwn"}))
    target = tmp_path / "out" / "data"
    with pytest.raises(DownloadError, match="link"):
        extract(archive, target)
    assert not target.exists()

    absolute = tarfile.TarInfo("abs")
    absolute.type = tarfile.SYMTYPE
    absolute.linkname = "/etc/passwd"
    archive = _serve_and_fetch(server, tmp_path, "abslink.tar.gz", tar_bytes([absolute], {}))
    with pytest.raises(DownloadError, match="link"):
        extract(archive, target)


def test_good_tar_and_zip_extract(server, tmp_path) -> None:
    inner = tarfile.TarInfo("fsdd/recordings/a.txt")
    link = tarfile.TarInfo("fsdd/latest")
    link.type = tarfile.SYMTYPE
    link.linkname = "recordings/a.txt"  # a link inside the tree is fine
    archive = _serve_and_fetch(server, tmp_path, "good.tar.gz",
                               tar_bytes([inner, link], {"fsdd/recordings/a.txt": b"hello"}))
    out = extract(archive, tmp_path / "t")
    assert (out / "fsdd" / "recordings" / "a.txt").read_bytes() == b"hello"

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("images/x.txt", b"zip ok")
    archive = _serve_and_fetch(server, tmp_path, "good.zip", buffer.getvalue())
    assert (extract(archive, tmp_path / "z") / "images" / "x.txt").read_bytes() == b"zip ok"


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_zip_members_escaping_are_refused(name, tmp_path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr(zipfile.ZipInfo(name), b"pwn")
    archive = tmp_path / "evil.zip"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(DownloadError, match="refusing"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_zip_symlink_is_refused(tmp_path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        bundle.writestr(info, "/etc/passwd")
    archive = tmp_path / "link.zip"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(DownloadError, match="link"):
        extract(archive, tmp_path / "out")
