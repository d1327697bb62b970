"""hrseg.weights.download and hrseg.weights.catalogue: downloads from a local HTTP server (127.0.0.1 only), resume,
retries, checksums, the hash ledger, local/file:// sources, mirror order and error messages.

Nothing here touches the internet: test entries point at the local server or at files.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import re
import socket
import threading
from dataclasses import dataclass, field

import pytest

from hrseg.models import BACKBONES
from hrseg.weights import download as F
from hrseg.weights.catalogue import (
    CATALOGUE,
    CLS_RELEASE,
    SEG_RELEASE,
    UNRELEASED_BENCHMARKS,
    CatalogueError,
    WeightEntry,
    get_entry,
    published_benchmarks,
)

PAYLOAD = bytes(range(256)) * 1024  # 256 KiB
OTHER = bytes(reversed(range(256))) * 1024
DROP_AT = 100_000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# A small HTTP server with scripted misbehaviour
# ---------------------------------------------------------------------------------------------


@dataclass
class ServerState:
    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True  # False: ignore Range headers and always answer 200
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the socket closes (once)
    fail_with: dict[str, list[int]] = field(default_factory=dict)  # path -> status codes to answer first
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        requested_range = self.headers.get("Range")
        state.requests.append((self.path, requested_range))
        failures = state.fail_with.get(self.path)
        if failures:
            self.send_error(failures.pop(0))
            return
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start, status = 0, 200
        if requested_range and state.ranges:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested_range).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        chunk = body[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("ETag", f'"{sha(body)[:16]}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        drop = state.drop_after.pop(self.path, None)
        if drop is not None:
            self.wfile.write(chunk[:drop])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(chunk)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    state = ServerState()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch):
    monkeypatch.delenv(F.MIRROR_ENV, raising=False)


def entry(*urls: str, filename: str = "weights.pth", sha256: str | None = None) -> WeightEntry:
    return WeightEntry(
        name="test_weights", kind="segmentation", filename=filename, urls=tuple(urls), url_source="test",
        manual="ask a colleague", sha256=sha256, dataset="cityscapes", backbone="hrnetv2_w18_small_v1",
        head="ocr", num_classes=19, align_corners=True, bn_format="standard",
    )


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/weights.pth"


FAST = {"retries": 0, "timeout": 5, "backoff": 0.0, "progress": False}


# ---------------------------------------------------------------------------------------------
# Catalogue
# ---------------------------------------------------------------------------------------------

OFFICIAL_SEG_FILES = {
    "hrnet_cs_8090_torch11.pth", "hrnet_ocr_cs_8162_torch11.pth", "hrnet_ocr_cs_trainval_8227_torch11.pth",
    "hrnet_lip_5583_torch04.pth", "hrnet_ocr_lip_5648_torch04.pth", "hrnet_pascal_ctx_5410_torch11.pth",
    "hrnet_ocr_pascal_ctx_5618_torch11.pth", "hrnet_cocostuff_3617_torch04.pth", "hrnet_ocr_cocostuff_3965_torch04.pth",
    "hrnet_ade20k_4312_torch04.pth", "hrnet_ocr_ade20k_4451_torch04.pth",
}
CLASSES = {"cityscapes": 19, "lip": 20, "pascal_ctx": 59, "cocostuff": 171, "ade20k": 150, "imagenet": 1000}


def test_catalogue_holds_every_readme_checkpoint_and_the_imagenet_backbones():
    seg = {e.filename for e in CATALOGUE.values() if e.kind == "segmentation"}
    assert seg == OFFICIAL_SEG_FILES
    imagenet_backbones = {e.backbone for e in CATALOGUE.values() if e.kind == "imagenet"}
    assert imagenet_backbones == set(BACKBONES)
    assert get_entry("hrnetv2_w48_imagenet").filename == "hrnetv2_w48_imagenet_pretrained.pth"


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_catalogue_entry_is_consistent(name):
    e = CATALOGUE[name]
    assert e.name == name
    assert e.backbone in BACKBONES
    assert e.num_classes == CLASSES[e.dataset]
    assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256)
    assert e.bn_format == ("inplace_abn" if "_torch04" in e.filename else "standard")
    assert e.expected is not None and e.expected.metric == ("top-1" if e.kind == "imagenet" else "mIoU")
    assert e.manual
    for url in e.urls:
        assert url.startswith("https://") and url.endswith("/" + e.filename)
        assert url.startswith(SEG_RELEASE if e.kind == "segmentation" else CLS_RELEASE)
    if e.kind == "segmentation":
        assert e.head in ("fcn", "ocr") and isinstance(e.align_corners, bool) and e.urls
        assert e.model == f"hrnetv2_w48_{e.head}"
        assert ("_ocr_" in e.filename) == (e.head == "ocr")
    else:
        assert e.head is None and e.align_corners is None and e.model == e.backbone
    if not e.urls:  # unconfirmed: say so
        assert "not confirmed" in e.notes and e.url_source.startswith("none")
    else:
        assert e.url_source.startswith("confirmed")


@pytest.mark.parametrize("name", [*CATALOGUE, *UNRELEASED_BENCHMARKS])
def test_published_numbers_say_their_protocol(name):
    """``tta`` (what the results table picks its column by) agrees with the protocol's words."""
    benchmarks = published_benchmarks(name)
    assert benchmarks
    for b in benchmarks:
        assert b.tta == ("+ flip" in b.protocol or "scales" in b.protocol), b
    assert len({b.tta for b in benchmarks if b.metric == "mIoU"}) == len([b for b in benchmarks if b.metric == "mIoU"])  # one number a column


def test_unreleased_benchmarks_have_no_file():
    assert set(UNRELEASED_BENCHMARKS).isdisjoint(CATALOGUE)
    assert [b.value for name in UNRELEASED_BENCHMARKS for b in published_benchmarks(name)] == [48.3, 50.1]
    with pytest.raises(CatalogueError, match="unknown weights 'nope'"):
        published_benchmarks("nope")


def test_catalogue_is_read_only_and_filenames_unique():
    with pytest.raises(TypeError):
        CATALOGUE["x"] = CATALOGUE["hrnetv2_w48_imagenet"]  # type: ignore[index]
    filenames = [e.filename for e in CATALOGUE.values()]
    assert len(filenames) == len(set(filenames))


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(CatalogueError, match="unknown weights 'hrnet_w99'.*hrnetv2_w48_ocr_cityscapes"):
        get_entry("hrnet_w99")
    with pytest.raises(CatalogueError):
        F.fetch("hrnet_w99", "unused")


# ---------------------------------------------------------------------------------------------
# HTTP downloads
# ---------------------------------------------------------------------------------------------


def test_download_places_file_and_records_hash(server, tmp_path):
    server.files["/w.pth"] = PAYLOAD
    path = F.fetch(entry(server.base + "/w.pth"), tmp_path / "pretrained", **FAST)
    assert path == tmp_path / "pretrained" / "weights.pth"
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == [F.LEDGER_NAME, "weights.pth"]  # no .part left
    record = F.read_ledger(path.parent)["weights.pth"]
    assert record["sha256"] == sha(PAYLOAD) and record["source"] == server.base + "/w.pth"
    assert record["name"] == "test_weights" and record["how"] == "first download"
    # a second fetch finds the verified file and does not download again
    assert F.fetch(entry(server.base + "/w.pth"), tmp_path / "pretrained", **FAST) == path
    assert len(server.requests) == 1


def test_dropped_connection_resumes_with_range(server, tmp_path):
    server.files["/w.pth"] = PAYLOAD
    server.drop_after["/w.pth"] = DROP_AT
    path = F.fetch(entry(server.base + "/w.pth"), tmp_path, **{**FAST, "retries": 2})
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/w.pth", None), ("/w.pth", f"bytes={DROP_AT}-")]


def test_partial_file_is_kept_and_resumed_by_the_next_run(server, tmp_path):
    server.files["/w.pth"] = PAYLOAD
    server.drop_after["/w.pth"] = DROP_AT
    with pytest.raises(F.FetchError, match=f"connection (closed|lost) after {DROP_AT} of {len(PAYLOAD)} bytes.*kept"):
        F.fetch(entry(server.base + "/w.pth"), tmp_path, **FAST)
    assert (tmp_path / "weights.pth.part").stat().st_size == DROP_AT
    assert not (tmp_path / "weights.pth").exists()
    path = F.fetch(entry(server.base + "/w.pth"), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/w.pth", f"bytes={DROP_AT}-")


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.files["/w.pth"] = PAYLOAD
    server.ranges = False
    server.drop_after["/w.pth"] = DROP_AT
    path = F.fetch(entry(server.base + "/w.pth"), tmp_path, **{**FAST, "retries": 1})
    assert path.read_bytes() == PAYLOAD  # not the first 100 kB twice
    assert server.requests == [("/w.pth", None), ("/w.pth", f"bytes={DROP_AT}-")]


def test_partial_file_from_another_source_is_not_continued(server, tmp_path):
    server.files["/w.pth"] = PAYLOAD
    (tmp_path / "weights.pth.part").write_bytes(OTHER[:DROP_AT])
    (tmp_path / "weights.pth.part.json").write_text(json.dumps({"url": "http://elsewhere/w.pth"}))
    path = F.fetch(entry(server.base + "/w.pth"), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/w.pth", None)]


def test_complete_partial_file_is_finished_without_downloading(server, tmp_path):
    server.files["/w.pth"] = PAYLOAD
    (tmp_path / "weights.pth.part").write_bytes(PAYLOAD)
    (tmp_path / "weights.pth.part.json").write_text(json.dumps({"url": server.base + "/w.pth"}))
    path = F.fetch(entry(server.base + "/w.pth"), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/w.pth", f"bytes={len(PAYLOAD)}-")]  # answered 416, nothing sent


def test_transient_server_errors_are_retried(server, tmp_path):
    server.files["/w.pth"] = PAYLOAD
    server.fail_with["/w.pth"] = [503, 503]
    with pytest.raises(F.FetchError, match="HTTP 503.*gave up after 2 attempts"):
        F.fetch(entry(server.base + "/w.pth"), tmp_path, **{**FAST, "retries": 1})
    server.fail_with["/w.pth"] = [503]
    assert F.fetch(entry(server.base + "/w.pth"), tmp_path, **{**FAST, "retries": 1}).read_bytes() == PAYLOAD


def test_progress_is_logged_when_not_a_terminal(server, tmp_path, caplog):
    server.files["/w.pth"] = PAYLOAD
    with caplog.at_level(logging.INFO, logger="hrseg.weights.download"):
        F.fetch(entry(server.base + "/w.pth"), tmp_path, **{**FAST, "progress": True})
    assert "weights.pth: downloading 0.2 MiB" in caplog.text
    assert "(100%)" in caplog.text


# ---------------------------------------------------------------------------------------------
# Checksums and the ledger
# ---------------------------------------------------------------------------------------------


def test_wrong_pinned_checksum_leaves_no_file(server, tmp_path):
    server.files["/w.pth"] = PAYLOAD
    with pytest.raises(F.ChecksumError) as info:
        F.fetch(entry(server.base + "/w.pth"), tmp_path, **{**FAST, "sha256": "0" * 64})
    message = str(info.value)
    assert f"expected {'0' * 64} (pinned with --sha256), got {sha(PAYLOAD)}" in message
    assert "check the hash given with --sha256" in message and f"--sha256 {sha(PAYLOAD)}" in message
    assert F.LEDGER_NAME not in message  # a fresh folder has no ledger to edit
    assert list(tmp_path.iterdir()) == []  # no file, no .part, no ledger


def test_wrong_catalogue_checksum_cannot_be_overridden(server, tmp_path):
    server.files["/w.pth"] = PAYLOAD
    with pytest.raises(F.ChecksumError, match="catalogue hash cannot be overridden"):
        F.fetch(entry(server.base + "/w.pth", sha256="1" * 64), tmp_path, **FAST)
    with pytest.raises(F.FetchError, match="contradicts the catalogue"):
        F.fetch(entry(server.base + "/w.pth", sha256="1" * 64), tmp_path, **{**FAST, "sha256": "2" * 64})


def test_recorded_hash_refuses_a_changed_file_until_reset(server, tmp_path):
    server.files["/w.pth"] = PAYLOAD
    path = F.fetch(entry(server.base + "/w.pth"), tmp_path, **FAST)
    path.unlink()
    server.files["/w.pth"] = OTHER  # the upstream file changed
    with pytest.raises(F.ChecksumError) as info:
        F.fetch(entry(server.base + "/w.pth"), tmp_path, **FAST)
    message = str(info.value)
    assert f"expected {sha(PAYLOAD)} (recorded in {tmp_path / F.LEDGER_NAME}" in message
    assert f"got {sha(OTHER)}" in message and "'test_weights' (weights.pth)" in message
    assert f"--sha256 {sha(OTHER)}" in message and "remove the 'weights.pth' entry" in message
    assert not path.exists() and not (tmp_path / "weights.pth.part").exists()
    # pinning the new hash accepts it and updates the ledger
    F.fetch(entry(server.base + "/w.pth"), tmp_path, **{**FAST, "sha256": sha(OTHER).upper()})
    assert path.read_bytes() == OTHER
    assert F.read_ledger(tmp_path)["weights.pth"]["sha256"] == sha(OTHER)


def test_existing_file_with_wrong_hash_is_refused_and_kept(server, tmp_path):
    server.files["/w.pth"] = PAYLOAD
    path = F.fetch(entry(server.base + "/w.pth"), tmp_path, **FAST)
    path.write_bytes(b"tampered")
    with pytest.raises(F.ChecksumError, match=f"{re.escape(str(path))} exists but its sha256 is {sha(b'tampered')}"):
        F.fetch(entry(server.base + "/w.pth"), tmp_path, **FAST)
    assert path.read_bytes() == b"tampered" and len(server.requests) == 1


def test_file_already_in_place_is_adopted_into_the_ledger(tmp_path):
    (tmp_path / "weights.pth").write_bytes(PAYLOAD)
    assert F.fetch(entry(), tmp_path, **FAST) == tmp_path / "weights.pth"
    record = F.read_ledger(tmp_path)["weights.pth"]
    assert record["sha256"] == sha(PAYLOAD) and record["how"] == "adopted a file already in place"


def test_bad_ledger_and_bad_pin_are_reported(tmp_path):
    (tmp_path / F.LEDGER_NAME).write_text('{\n  "files": {\n')
    with pytest.raises(F.FetchError, match=rf"{re.escape(F.LEDGER_NAME)}:3: not valid JSON"):
        F.fetch(entry(), tmp_path, **FAST)
    (tmp_path / F.LEDGER_NAME).write_text(json.dumps({"files": {"weights.pth": {"sha256": "abc"}}}))
    with pytest.raises(F.FetchError, match=r"files\.weights\.pth\.sha256 = 'abc'"):
        F.read_ledger(tmp_path)
    with pytest.raises(F.FetchError, match="--sha256 'xyz': expected 64 hexadecimal digits"):
        F.fetch(entry(), tmp_path / "other", **{**FAST, "sha256": "xyz"})


def test_verify_reports_ok_mismatch_unrecorded_and_missing(server, tmp_path):
    server.files["/w.pth"] = PAYLOAD
    F.fetch(entry(server.base + "/w.pth"), tmp_path, **FAST)
    official = get_entry("hrnetv2_w48_ocr_cityscapes").filename
    (tmp_path / official).write_bytes(b"placed by hand")
    by_file = {r.filename: r for r in F.verify(tmp_path)}
    assert by_file["weights.pth"].status == "ok" and by_file["weights.pth"].name == "test_weights"
    assert by_file[official].status == "unrecorded" and by_file[official].name == "hrnetv2_w48_ocr_cityscapes"
    (tmp_path / "weights.pth").write_bytes(b"bit rot")
    assert {r.filename: r.status for r in F.verify(tmp_path)}["weights.pth"] == "mismatch"
    (tmp_path / "weights.pth").unlink()
    assert {r.filename: r.status for r in F.verify(tmp_path)}["weights.pth"] == "missing"
    with pytest.raises(F.FetchError, match="no such weights directory"):
        F.verify(tmp_path / "absent")


# ---------------------------------------------------------------------------------------------
# Local sources, mirrors and their order
# ---------------------------------------------------------------------------------------------


def test_local_path_file_url_and_from_sources(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "weights.pth").write_bytes(PAYLOAD)
    assert F.fetch(entry(), tmp_path / "a", mirrors=[mirror], **FAST).read_bytes() == PAYLOAD
    assert F.fetch(entry(), tmp_path / "b", mirrors=[mirror.as_uri()], **FAST).read_bytes() == PAYLOAD
    download = tmp_path / "Downloads" / "some name.pth"
    download.parent.mkdir()
    download.write_bytes(OTHER)
    path = F.fetch(entry(), tmp_path / "c", source=download, **FAST)
    assert path.name == "weights.pth" and path.read_bytes() == OTHER and download.exists()
    assert F.read_ledger(tmp_path / "c")["weights.pth"]["source"] == str(download)
    assert F.fetch(entry(), tmp_path / "d", source=download.as_uri(), **FAST).read_bytes() == OTHER


def test_source_order_mirrors_then_env_then_catalogue(tmp_path, monkeypatch):
    e = entry("https://example.invalid/w/weights.pth")
    monkeypatch.setenv(F.MIRROR_ENV, "http://mirror.local/weights/")
    found = F.sources_for(e, mirrors=[tmp_path, "file:///srv/w"])
    assert [(s.location, s.origin) for s in found] == [
        (str(tmp_path / "weights.pth"), "--mirror"),
        ("file:///srv/w/weights.pth", "--mirror"),
        ("http://mirror.local/weights/weights.pth", "$HRSEG_WEIGHTS_MIRROR"),
        ("https://example.invalid/w/weights.pth", "catalogue"),
    ]
    assert [s.origin for s in F.sources_for(e, mirrors=[tmp_path], source="x.pth")] == ["--from"]
    with pytest.raises(F.FetchError, match="mirror 'ftp://host/w'"):
        F.sources_for(e, mirrors=["ftp://host/w"])


def test_env_mirror_is_used_before_the_catalogue_url(server, tmp_path, monkeypatch):
    server.files["/primary/weights.pth"] = OTHER
    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / "weights.pth").write_bytes(PAYLOAD)
    monkeypatch.setenv(F.MIRROR_ENV, str(offline))
    assert F.fetch(entry(server.base + "/primary/weights.pth"), tmp_path / "w", **FAST).read_bytes() == PAYLOAD
    assert server.requests == []


def test_mirrors_are_tried_in_order(server, tmp_path):
    server.files["/second/weights.pth"] = PAYLOAD
    server.files["/primary/weights.pth"] = OTHER
    mirrors = [server.base + "/first", server.base + "/second/"]
    path = F.fetch(entry(server.base + "/primary/weights.pth"), tmp_path, mirrors=mirrors, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/first/weights.pth", "/second/weights.pth"]
    assert F.read_ledger(tmp_path)["weights.pth"]["source"] == server.base + "/second/weights.pth"


def test_checksum_failure_on_one_mirror_falls_back_to_the_next(server, tmp_path):
    server.files["/bad/weights.pth"] = OTHER
    server.files["/good/weights.pth"] = PAYLOAD
    e = entry(server.base + "/good/weights.pth", sha256=sha(PAYLOAD))
    path = F.fetch(e, tmp_path, mirrors=[server.base + "/bad"], **FAST)
    assert path.read_bytes() == PAYLOAD


def test_all_sources_failing_lists_each_reason_and_the_manual_steps(server, tmp_path):
    dead = closed_port_url()
    e = entry(server.base + "/gone/weights.pth", dead)
    empty = tmp_path / "empty"
    empty.mkdir()
    dest = tmp_path / "pretrained"
    with pytest.raises(F.FetchError) as info:
        F.fetch(e, dest, mirrors=[empty], **FAST)
    message = str(info.value)
    assert f"{empty / 'weights.pth'} (via --mirror): no such file" in message
    assert f"{server.base}/gone/weights.pth (via catalogue): HTTP 404" in message
    assert f"{dead} (via catalogue): cannot connect" in message
    assert message.index("--mirror): no such") < message.index("HTTP 404") < message.index("cannot connect")
    assert f"Download weights.pth by hand from {server.base}/gone/weights.pth" in message
    assert "other copies: ask a colleague" in message
    assert f"put it at {(dest / 'weights.pth').resolve()}" in message
    assert f"hrseg fetch get test_weights --dest {dest} --from PATH" in message
    assert F.MIRROR_ENV in message
    assert not isinstance(info.value, F.ChecksumError)


def test_entry_without_urls_says_what_to_download(tmp_path):
    e = get_entry("hrnetv2_w48_imagenet")
    with pytest.raises(F.FetchError) as info:
        F.fetch(e, tmp_path / "pretrained", **FAST)
    message = str(info.value)
    assert "No source to try" in message and "hrnetv2_w48_imagenet_pretrained.pth" in message
    assert "pan.baidu.com" in message and "--from PATH" in message
    assert not (tmp_path / "pretrained").exists()


def test_fetch_many_tries_every_name_then_reports_all(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "hrnet_w18_small_model_v1.pth").write_bytes(PAYLOAD)
    names = ["hrnetv2_w48_imagenet", "hrnetv2_w18_small_v1_imagenet"]
    with pytest.raises(F.FetchError, match="1 of 2 weight files could not be fetched") as info:
        F.fetch_many(names, tmp_path / "w", mirrors=[mirror], **FAST)
    assert "hrnetv2_w48_imagenet_pretrained.pth" in str(info.value)
    assert (tmp_path / "w" / "hrnet_w18_small_model_v1.pth").read_bytes() == PAYLOAD
    with pytest.raises(F.FetchError, match="give exactly one name"):
        F.fetch_many(names, tmp_path / "w", sha256="0" * 64)
    assert F.fetch_many([], tmp_path / "nothing") == [] and not (tmp_path / "nothing").exists()
