"""Shared fixtures. The parity fixtures (official outputs on random weights) are kept in
``tests/fixtures/parity`` (see its README); ``$HRSEG_PARITY_DIR`` points the tests at another
copy. Tests that need them skip with a reason only where that folder lacks them."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
_SERVICE_DIR = pytest.StashKey[str]()
PARITY_FILES = ("w18s2_ocr_k19.pth", "w18s2_ocr_k19_io.pt", "keys_hrnet_ocr_w48_k19.txt", "keys_hrnet_w48_fcn_k19.txt")


def pytest_configure(config: pytest.Config) -> None:
    """The session's own tracking service (``hrseg.tracking.service``) and warm-start servers
    (``hrseg.runtime.warm``), in a short private folder that the stage scripts the tests run
    inherit; stopped when the session ends."""
    from hrseg.runtime import warm
    from hrseg.tracking import service

    if not os.environ.get(service.ENV_DIR):
        os.environ[service.ENV_DIR] = tempfile.mkdtemp(prefix="hrseg-tests-", dir="/tmp")
        os.environ[warm.ENV_DIR] = os.environ[service.ENV_DIR]
        os.environ.setdefault(warm.ENV_IDLE, "20")  # each holds torch (about 700 MB): gone soon after use
        config.stash[_SERVICE_DIR] = os.environ[service.ENV_DIR]


def pytest_unconfigure(config: pytest.Config) -> None:
    from hrseg.runtime import warm
    from hrseg.tracking import service

    folder = config.stash.get(_SERVICE_DIR, None)
    if folder:
        service.stop_service()
        warm.stop_servers()
        shutil.rmtree(folder, ignore_errors=True)


def parity_dir() -> Path:
    return Path(os.environ.get("HRSEG_PARITY_DIR") or REPO / "tests" / "fixtures" / "parity")


@pytest.fixture(scope="session")
def parity() -> Path:
    path = parity_dir()
    missing = [name for name in PARITY_FILES if not (path / name).is_file()]
    if missing:
        pytest.skip(f"parity fixtures {', '.join(missing)} not found in {path} (set HRSEG_PARITY_DIR)")
    return path


@pytest.fixture(autouse=True)
def _seed_and_logging():
    """A fixed torch seed, and the root logger's handlers/level restored after each test (CLI
    commands configure logging for the process)."""
    torch.manual_seed(0)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _started_for(path: Path) -> list[int]:
    """Processes whose command line names ``path``, without the children they fork (a fork
    shows its parent's command line until it execs). A process in the middle of its exec shows
    an empty one for an instant, so an empty answer is asked again for up to 5 s."""
    deadline = time.monotonic() + 5.0
    while not (found := _started_for_once(path)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def _started_for_once(path: Path) -> list[int]:
    found: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.fsencode(path) in (entry / "cmdline").read_bytes():
                found[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return sorted(pid for pid, parent in found.items() if parent not in found)


@pytest.fixture
def processes_started_for():
    """``processes_started_for(socket_path) -> [pid, ...]``: the background services started
    for that socket (hrseg.runtime.background), counted from /proc."""
    return _started_for
