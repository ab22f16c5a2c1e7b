"""Downloads against a loopback HTTP server serving hand-made IDX files.

Checks that a verified file lands in the cache, that a failing mirror falls through to the
next, and that a checksum mismatch or a cut connection leaves nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from gmmn.data import download_dataset
from gmmn.data.idx import write_idx
from gmmn.data.mnist import IdxSource, load_idx_dataset
from gmmn.errors import DataError

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GMMN_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tiny"


@pytest.fixture
def payloads(tmp_path) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    arrays = {
        FILES[0]: rng.integers(0, 256, (10, 2, 2), dtype=np.uint8),
        FILES[1]: rng.integers(0, 10, 10, dtype=np.uint8),
        FILES[2]: rng.integers(0, 256, (4, 2, 2), dtype=np.uint8),
        FILES[3]: rng.integers(0, 10, 4, dtype=np.uint8),
    }
    out = {}
    for name, a in arrays.items():
        write_idx(tmp_path / name, a)
        out[name] = (tmp_path / name).read_bytes()
    return out


def content_sums(payloads: dict[str, bytes]) -> dict[str, str]:
    return {n: hashlib.sha256(gzip.decompress(b)).hexdigest() for n, b in payloads.items()}


class Server:
    """A loopback HTTP/1.0 server; `routes` maps a path to (body, declared length or None)."""

    def __init__(self):
        self.routes: dict[str, tuple[bytes, int | None]] = {}
        self.hits: list[str] = []
        routes, hits = self.routes, self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the name http.server calls)
                hits.append(self.path)
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, declared = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(declared or len(body)))
                self.end_headers()
                # With a declared length above len(body), returning closes the connection
                # mid-body: an interrupted download.
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # A short poll interval keeps shutdown() (each test's teardown) from waiting 0.5 s.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)

    def serve(self, prefix: str, payloads: dict[str, bytes], *, declared=None):
        for name, body in payloads.items():
            self.routes[f"{prefix}{name}"] = (body, (declared or {}).get(name))
        return f"{self.url}{prefix}"


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_lands_verified_files_in_cache(server, payloads, cache):
    url = server.serve("/a/", payloads)
    source = IdxSource(name="tiny", mirrors=(url,), sha256=content_sums(payloads),
                       n_validation=2)
    bars = []

    class Bar:
        def __init__(self, desc, total):
            self.desc, self.total, self.seen = desc, total, 0
            bars.append(self)

        def update(self, n):
            self.seen += n

        def close(self):
            pass

    s = load_idx_dataset(source, seed=0, progress=Bar)
    assert s.train.shape == (8, 4) and s.test.shape == (4, 4)
    assert leftovers(cache) == sorted(FILES)
    assert all((cache / n).read_bytes() == b for n, b in payloads.items())
    assert [(b.desc, b.total, b.seen) for b in bars] == [
        (n, len(payloads[n]), len(payloads[n])) for n in FILES]
    # A second load reads the cache without touching the network.
    before = len(server.hits)
    load_idx_dataset(source)
    assert len(server.hits) == before


def test_falls_back_to_second_mirror(server, payloads, cache):
    dead = f"{server.url}/missing/"  # answers 404 for everything
    good = server.serve("/b/", payloads)
    source = IdxSource(name="tiny", mirrors=(dead, good), sha256=content_sums(payloads),
                       n_validation=2)
    assert load_idx_dataset(source).validation.shape == (2, 4)
    assert f"/missing/{FILES[0]}" in server.hits and f"/b/{FILES[0]}" in server.hits
    assert leftovers(cache) == sorted(FILES)


def test_checksum_mismatch_leaves_nothing(server, payloads, cache):
    url = server.serve("/a/", payloads)
    sums = content_sums(payloads) | {FILES[0]: "0" * 64}
    source = IdxSource(name="tiny", mirrors=(url,), sha256=sums)
    with pytest.raises(DataError, match=r"could not download train-images-idx3-ubyte.gz \(http"
                                        r".*is not the official tiny file"):
        load_idx_dataset(source)
    assert leftovers(cache) == []


def test_interrupted_download_leaves_nothing(server, payloads, cache):
    url = server.serve("/a/", payloads, declared={FILES[0]: len(payloads[FILES[0]]) + 5000})
    source = IdxSource(name="tiny", mirrors=(url,), sha256={})
    with pytest.raises(DataError, match="connection closed with 5000 bytes still missing"):
        load_idx_dataset(source)
    assert leftovers(cache) == []


def test_bad_gzip_from_mirror_is_not_cached(server, payloads, cache):
    broken = payloads | {FILES[1]: payloads[FILES[1]][:-12]}
    url = server.serve("/a/", broken)
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        load_idx_dataset(IdxSource(name="tiny", mirrors=(url,), sha256={}))
    # The verified first file stays; the broken one and its temp file do not.
    assert leftovers(cache) == [FILES[0]]


def test_no_network_says_where_to_put_files(cache):
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = IdxSource(name="tiny", mirrors=(f"http://127.0.0.1:{port}/",), sha256={})
    with pytest.raises(DataError, match=r"without network, put train-images-idx3-ubyte.gz, "
                                        r"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                                        r"t10k-labels-idx1-ubyte.gz \(gzipped or not\) into "
                                        r".*cache/tiny"):
        load_idx_dataset(source)
    assert leftovers(cache) == []


def test_download_refuses_tfd(cache):
    with pytest.raises(DataError, match="TFD must be placed by hand"):
        download_dataset("tfd")


def test_unwritable_cache_is_reported(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should go")
    monkeypatch.setenv("GMMN_DATA", str(blocker))
    source = IdxSource(name="tiny", mirrors=("http://127.0.0.1:9/",), sha256={})
    with pytest.raises(DataError, match="cannot write into the cache folder .*set GMMN_DATA"):
        load_idx_dataset(source)
