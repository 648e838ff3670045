"""bench/gpu_grid.sh's plumbing, with python and nvidia-smi replaced by fakes: the call ends
when its grids do (the nvidia-smi monitor, which never ends by itself, is stopped rather than
waited for: a bare ``wait`` once held a lent GPU's call to its limit) and brings back each
grid's results and the archive of its runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: stands in for python: the environment probe writes its JSON, a grid writes its results
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-" ]; then cat >/dev/null; echo '{"gpu": "fake"}' > "$2"; exit 0; fi
if [ "$1" = "bench/honest_grid.py" ]; then
    while [ $# -gt 0 ]; do [ "$1" = "--out" ] && out=$2; shift; done
    mkdir -p "$out/structural/p0"
    echo '{"structural": {}}' > "$out/results.json"
    echo '{}' > "$out/structural/p0/metrics.json"
    exit 0
fi
exit 1
"""
#: stands in for nvidia-smi -l 10: samples until it is stopped
FAKE_SMI = "#!/usr/bin/env bash\nwhile true; do echo sample; sleep 1; done\n"


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def test_the_call_ends_with_its_grids_and_brings_back_their_results(tmp_path):
    root = tmp_path / "repo"
    (root / "bench").mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "gpu_grid.sh", root / "bench")
    (root / ".gpu-grid").mkdir()
    (root / ".gpu-grid" / "imports.tsv").write_text("")
    (root / ".gpu-grid" / "source.txt").write_text("commit x\n")
    fakes = tmp_path / "bin"
    fakes.mkdir()
    executable(fakes / "python", FAKE_PYTHON)
    executable(fakes / "nvidia-smi", FAKE_SMI)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PATH": f"{fakes}:{os.environ['PATH']}",
        "PYTHON": str(fakes / "python"),
        "OUT": str(out),
        "GRIDS": "x",
        "GRID_DIR": str(tmp_path),
    }
    call = subprocess.Popen(
        ["bash", str(root / "bench" / "gpu_grid.sh")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its fakes go with it whatever happens
    )
    try:
        _, stderr = call.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(call.pid, signal.SIGKILL)
    assert call.returncode == 0, stderr
    assert "grids: done" in (out / "grid.log").read_text()
    assert (out / "results-x.json").read_text().strip() == '{"structural": {}}'
    assert "sample" in (out / "gpu.log").read_text()
    with tarfile.open(out / "runs.tgz") as archive:
        assert "runs/grid/x/structural/p0/metrics.json" in archive.getnames()
