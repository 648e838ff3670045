"""bench/honest_grid.py's walk, with vlkge replaced by a fake that writes what a run would: the
selection on validation, the partner arm's run of the same seed blended in, the controls'
partners a seed further, every result computed once and kept, side by side or one at a time."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.test_configs_shipped import honest_grid

SPEC = {
    "arms": {
        "vl": {"config": "vl.yaml", "partner": "structural", "set": {"model.structural": False}},
        "structural": {"config": "structural.yaml"},
    },
    "grid": {"model.dim": [8, 16], "training.regularizer.weight": [0.05, 0.1]},
    "seeds": [42, 43, 44],
    "controls": {
        "two": {
            "arm": "structural",
            "partner": "structural",
            "partner_offset": 1,
            "set": {"evaluation.lexical_blend.weights": [1]},
        }
    },
}
#: what the fake's configs hold where no grid point overrides them
DEFAULTS = {"model.dim": "8", "training.regularizer.weight": "0.1"}


def fake_vlkge(calls: list):
    """A stand-in for the module's ``vlkge``: train writes metrics.json (valid MRR from the
    width, the weight and the seed), evaluate prints metrics that name its overrides."""

    def run(*args: str, threads: int):
        calls.append(args)
        sets = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--set")
        if args[0] == "train":
            out = Path(args[-1])
            out.mkdir(parents=True, exist_ok=True)
            sets = {**DEFAULTS, **sets}
            mrr = int(sets["model.dim"]) / 100 + float(sets["training.regularizer.weight"])
            mrr += int(sets["seed"]) / 1e4
            metrics = {"valid": {"both": {"mrr": mrr}}, "best_epoch": 3, "train_time_s": 1.0}
            (out / "metrics.json").write_text(json.dumps(metrics))
            (out / "overrides.json").write_text(json.dumps(sets))
            return None
        run_dir, split = args[1], args[3]
        trained = {**DEFAULTS, **json.loads((Path(run_dir) / "overrides.json").read_text())}
        partner = sets.get("evaluation.run_blend.run")
        mrr = 0.5 + (0.1 if partner else 0) + int(trained["model.dim"]) / 1000
        mrr += float(trained["training.regularizer.weight"]) / 10
        both = {"mrr": mrr, "hits@1": 0.4, "hits@3": 0.5, "hits@10": 0.6}
        payload = {split: {"both": both}, "partner": partner, "run": run_dir, "sets": sets}

        class Done:
            stdout = json.dumps(payload)

        return Done()

    return run


@pytest.mark.parametrize("parallel", [1, 4])
def test_grid_selects_on_validation_blends_partners_and_scores_controls(
    tmp_path, monkeypatch, capsys, parallel
):
    grid = honest_grid()
    calls: list = []
    monkeypatch.setattr(grid, "vlkge", fake_vlkge(calls))
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    argv = ["honest_grid", str(path), "--out", str(out), "--parallel", str(parallel)]
    sets = ["--set", "device=cuda", "--train-set", "training.checkpoint_every=9"]
    monkeypatch.setattr(sys, "argv", [*argv, *sets])
    grid.main()
    results = json.loads((out / "results.json").read_text())

    # structural: d 16 x 0.1 has the best validation MRR; vl: its valid.json (with the
    # partner's seed-42 run blended in) prefers it as well
    structural, vl = results["structural"], results["vl"]
    assert structural["selected"] == {"model.dim": 16, "training.regularizer.weight": 0.1}
    assert vl["selected"] == {"model.structural": False, **structural["selected"]}
    assert [r["run"] for r in structural["seeds"]] == [
        str(out / "structural" / n) for n in ("p3", "s43", "s44")
    ]
    # each VL seed is scored with the structural run of its own seed; trained without one
    partners = [r["partner"] for r in vl["seeds"]]
    assert partners == [r["run"] for r in structural["seeds"]]
    assert (
        json.loads((out / "vl" / "s43" / "overrides.json").read_text())["evaluation.run_blend.run"]
        == "null"
    )
    valid = json.loads((out / "vl" / "p0" / "valid.json").read_text())
    assert valid["partner"] == str(out / "structural" / "p3")
    assert vl["test"]["mrr"]["mean"] == pytest.approx(0.626)
    assert structural["test"]["mrr"] == {"mean": pytest.approx(0.526), "std": 0}
    assert all(r["partner"] is None for r in structural["seeds"])

    # the control: the structural seeds, each with the next seed's run and the control's set
    control = results["control:two"]
    assert [r["partner"] for r in control["seeds"]] == [
        str(out / "structural" / n) for n in ("s43", "s44", "p3")
    ]
    kept = json.loads((out / "structural" / "s44" / "test-two.json").read_text())
    assert kept["sets"]["evaluation.lexical_blend.weights"] == "[1]"
    assert kept["sets"]["device"] == "cuda"
    assert yaml.safe_load((out / "vl.yaml").read_text())["set"] == vl["selected"]
    assert results["machine"]["sets"] == {"device": "cuda"}
    trained = json.loads((out / "vl" / "p1" / "overrides.json").read_text())
    assert trained["device"] == "cuda" and trained["training.checkpoint_every"] == "9"
    assert "training.checkpoint_every" not in kept["sets"]

    # a second walk trains and evaluates nothing again
    calls.clear()
    grid.main()
    assert calls == []
    assert "control:two: test MRR 0.6260" in capsys.readouterr().out


def test_shipped_trains_each_arm_as_configured_with_its_seeds_and_controls(tmp_path, monkeypatch):
    """``--shipped``: no grid point, so one run per arm and seed and no selection to make."""
    grid = honest_grid()
    calls: list = []
    monkeypatch.setattr(grid, "vlkge", fake_vlkge(calls))
    spec = {
        **SPEC,
        "arms": {**SPEC["arms"], "structural": {"config": "s.yaml", "grid": {"x": [1, 2]}}},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["honest_grid", str(path), "--out", str(out), "--shipped"])
    grid.main()
    results = json.loads((out / "results.json").read_text())
    trained = [c for c in calls if c[0] == "train"]
    assert len(trained) == 6  # two arms x three seeds
    assert not any("model.dim" in a or a.startswith("x=") for c in trained for a in c)
    assert results["structural"]["selected"] == {}
    assert [r["run"] for r in results["vl"]["seeds"]] == [
        str(out / "vl" / n) for n in ("p0", "s43", "s44")
    ]
    assert [r["partner"] for r in results["control:two"]["seeds"]] == [
        str(out / "structural" / n) for n in ("s43", "s44", "p0")
    ]


def test_grid_refuses_a_partner_that_is_no_arm(tmp_path, monkeypatch):
    grid = honest_grid()
    spec = {**SPEC, "controls": {"bad": {"arm": "structural", "partner": "text"}}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    monkeypatch.setattr(sys, "argv", ["honest_grid", str(path), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="bad: partner 'text' is not an arm without a partner"):
        grid.main()


def test_grid_refuses_arms_without_their_partner(tmp_path, monkeypatch):
    grid = honest_grid()
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    argv = ["honest_grid", str(path), "--out", str(tmp_path), "--arms", "vl"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="--arms: add structural, the partner of an arm it names"):
        grid.main()


def test_a_slow_arm_holds_up_only_what_depends_on_it(tmp_path, monkeypatch):
    """The structural arm is selected, seeded and scored while the VL arm's grid points are
    still training (they wait here until the structural arm's last test is written)."""
    grid = honest_grid()
    calls: list = []
    fake = fake_vlkge(calls)
    out = tmp_path / "out"

    def slow_vl(*args: str, threads: int):
        if args[0] == "train" and "vl" in Path(args[-1]).parts:
            deadline = time.monotonic() + 20
            while not (out / "structural" / "s44" / "test.json").is_file():
                assert time.monotonic() < deadline, "the structural arm waited for the VL arm"
                time.sleep(0.01)
        return fake(*args, threads=threads)

    monkeypatch.setattr(grid, "vlkge", slow_vl)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    argv = ["honest_grid", str(path), "--out", str(out), "--parallel", "8"]
    monkeypatch.setattr(sys, "argv", argv)
    grid.main()
    results = json.loads((out / "results.json").read_text())
    assert {"structural", "vl", "control:two"} <= results.keys()


def test_arms_run_only_the_controls_whose_runs_they_hold(tmp_path, monkeypatch):
    """``--arms structural``: the structural arm and its controls; a control that needs
    another arm's runs is left out rather than failing."""
    grid = honest_grid()
    monkeypatch.setattr(grid, "vlkge", fake_vlkge([]))
    spec = {
        **SPEC,
        "arms": {**SPEC["arms"], "other": {"config": "other.yaml"}},
        "controls": {
            **SPEC["controls"],
            "mixed": {"arm": "structural", "partner": "other"},
        },
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    argv = ["honest_grid", str(path), "--out", str(out), "--arms", "structural"]
    monkeypatch.setattr(sys, "argv", argv)
    grid.main()
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"structural", "control:two", "machine"}


def test_finished_steps_need_no_process_slot(tmp_path, monkeypatch):
    """A grid resumed after everything ran (trainings and evaluations on disk) completes with
    its one process slot held by something else: nothing finished waits for a slot."""
    grid = honest_grid()
    calls: list = []
    monkeypatch.setattr(grid, "vlkge", fake_vlkge(calls))
    path, out = tmp_path / "grid.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(SPEC))
    monkeypatch.setattr(sys, "argv", ["honest_grid", str(path), "--out", str(out)])
    grid.main()
    first = json.loads((out / "results.json").read_text())
    calls.clear()
    args = argparse.Namespace(out=out, threads=1, set=[], train_set=[])
    release = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(release.wait, 20)  # the only slot, taken for 20 s
        start = time.monotonic()
        rows = dict(grid.Grid(SPEC, args, pool).walk(list(SPEC["arms"])[::-1], False))
        waited = time.monotonic() - start
        release.set()
    assert waited < 10  # not held up by the taken slot
    assert calls == []  # nothing ran again
    for key, entry in rows.items():
        assert entry["test"] == first[key]["test"]
