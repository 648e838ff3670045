"""Shared fixtures: the real data folder, an isolated cache, no network, toy datasets."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import pytest

# The shared data folder sits next to the repository: <repo>/../shared/data.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
os.environ.setdefault("VLKGE_DATA_DIR", str(SHARED_DATA))

DATA_DIR = Path(os.environ["VLKGE_DATA_DIR"])

# A tiny transductive graph: every valid/test entity and relation occurs in train.
TOY_TRAIN = [
    ("a", "likes", "b"),
    ("b", "likes", "c"),
    ("c", "likes", "a"),
    ("a", "knows", "c"),
    ("b", "knows", "d"),
    ("d", "parent", "a"),
]
TOY_VALID = [("c", "knows", "a"), ("b", "likes", "a")]
TOY_TEST = [("c", "knows", "b"), ("a", "parent", "d")]


def write_tsv(path: Path, rows, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join("\t".join(r) + newline for r in rows).encode("utf-8"))
    return path


def write_toy(folder: Path, train=TOY_TRAIN, valid=TOY_VALID, test=TOY_TEST) -> Path:
    """Write train/valid/test.txt into ``folder`` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tsv(folder / "train.txt", train)
    write_tsv(folder / "valid.txt", valid)
    write_tsv(folder / "test.txt", test)
    return folder


# --- processes: a hung child must fail its test, never hang the suite ----------------------
# pytest-timeout (pyproject.toml) fails a test that runs too long; these hooks then end the
# processes it started, and the session ends every child left, so that interpreter exit never
# waits on a stuck worker. torch's own compile workers are left to shut down by themselves.
KEEP = ("torch._inductor", "compile_worker")


def live_children() -> set[int]:
    """PIDs of this process's live children, read from /proc (empty where there is none)."""
    me, found = os.getpid(), set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
            command = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if int(parent) == me and state != "Z" and not any(k in command for k in KEEP):
            found.add(int(stat.parent.name))
    return found


def end_processes(pids: set[int], grace_s: float = 2.0) -> None:
    """SIGTERM, then SIGKILL whatever is still there after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while pids & live_children() and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.vlkge_failed = True
    return report


@pytest.fixture(autouse=True)
def _no_stuck_children(request):
    """A test that fails (a timeout included) takes down the processes it started."""
    before = live_children()
    yield
    if getattr(request.node, "vlkge_failed", False):
        end_processes(live_children() - before)


def pytest_sessionfinish(session, exitstatus):
    for child in multiprocessing.active_children():
        child.daemon = True  # not joined at exit
    end_processes(live_children())


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """Every test gets its own empty cache, no ImageNet root, and no network access."""
    monkeypatch.setenv("VLKGE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("VLKGE_IMAGENET_DIR", raising=False)

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"test tried to reach the network: {url}")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


@pytest.fixture
def data_dir() -> Path:
    """The real datasets (skips when the shared folder is absent)."""
    if not (DATA_DIR / "wn9-img" / "train.txt").is_file():
        pytest.skip(f"shared data not found in {DATA_DIR}")
    return DATA_DIR


@pytest.fixture
def tsv():
    """``tsv(path, rows, newline="\\n")`` writes tab-separated rows (helper as a fixture)."""
    return write_tsv


@pytest.fixture
def make_dataset():
    """``make_dataset(folder, train=..., valid=..., test=...)`` writes a dataset folder."""
    return write_toy


@pytest.fixture
def toy_dir(tmp_path) -> Path:
    """A folder holding the toy dataset as train/valid/test.txt."""
    return write_toy(tmp_path / "toy")


class Tripwire:
    """A FIFO that nothing may open to read: such a reader would wait for a writer forever. A
    thread plays the writer the moment a reader appears, so the reader gets end-of-file (the
    test fails on ``opened`` instead of hanging)."""

    def __init__(self, path: Path):
        self.path = path
        self.opened = False
        os.mkfifo(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            try:  # succeeds only while a reader is waiting
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                continue
            self.opened = True
            os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def fifo(tmp_path):
    """A :class:`Tripwire` FIFO, ``pipe.png``, in a folder of its own."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    folder = tmp_path / "fifo"
    folder.mkdir()
    wire = Tripwire(folder / "pipe.png")
    yield wire
    wire.stop()
