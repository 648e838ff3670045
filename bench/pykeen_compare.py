#!/usr/bin/env python
"""Train the same model with the same settings in vlkge and in PyKEEN; compare quality and speed.

Usage::

    python bench/pykeen_compare.py [--datasets kinships umls] [--models distmult complex]
                                   [--regime negative_sampling|1vsall] [--epochs N] [--quick]
                                   [--json-out results.json]

Both libraries see the same id-triples (vlkge's loader; PyKEEN gets them as a
``CoreTriplesFactory``), the same model (interaction, width, Xavier-uniform initialisation of
both tables, no regulariser, no constraint), the same training regime, Adagrad with the same learning
rate, batch size, epochs and seed, and the same evaluation protocol
(filtered with train + valid + test, realistic ties, head and tail queries of the test split).
Two regimes:

- ``negative_sampling`` (the paper's): softplus / logistic loss over 1 positive + N negatives,
  head or tail corrupted with probability 1/2 (PyKEEN: ``SLCWATrainingLoop``);
- ``1vsall``: every training triple's head and tail query scored against all entities with a
  softmax cross-entropy (vlkge: ``training.regime: 1vsall``, a batch of ``2 * batch_size``
  queries; PyKEEN: ``SymmetricLCWATrainingLoop`` with ``CrossEntropyLoss``, which scores both
  sides of ``batch_size`` triples per step): the same queries per step.

Each (dataset, model, library) runs in its own subprocess with ``torch.set_num_threads``, so
imports and peak memory (``ru_maxrss``) do not leak between them and the libraries never run at
the same time. Reported per run:

- ``train_s``: wall time of the training call (setup + every epoch, no evaluation inside);
- ``epoch_s``: median wall time of one epoch after the first (vlkge: the trainer's per-epoch
  ``train_time``; PyKEEN: time between ``post_epoch`` callbacks). The first epoch carries
  one-time work in both libraries (vlkge compiles its distance kernels, PyKEEN's clock starts
  at ``train``), so it counts only when it is the only one;
- ``triples_per_s``: positive training triples per second, from ``epoch_s``;
- ``eval_s``: best of ``--eval-repeats`` evaluations of the test split (filter construction
  included: vlkge builds its ``Evaluator``, PyKEEN builds the filter inside ``evaluate``);
- test MRR / Hits@k (filtered, realistic ties, both sides) and peak RSS.

Known, deliberate differences (see docs/benchmarks-pykeen.md): vlkge draws N *distinct*
negatives per positive and can draw the positive itself (no filter); PyKEEN draws with
replacement but never the positive's own entity. PyKEEN splits each batch's negatives half
head / half tail; vlkge flips a coin per positive.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASETS = ("kinships", "umls")
MODELS = ("distmult", "complex", "transe", "rotate")
DEFAULT_MODELS = ("distmult", "complex")
LIBRARIES = ("vlkge", "pykeen")
METRICS = ("mrr", "hits@1", "hits@3", "hits@10")
PYKEEN_METRICS = {
    "mrr": "inverse_harmonic_mean_rank",
    "mr": "arithmetic_mean_rank",
    "hits@1": "hits_at_1",
    "hits@3": "hits_at_3",
    "hits@10": "hits_at_10",
}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- vlkge ------------------------------------------------------------------------------------
def run_vlkge(dataset: str, model_name: str, s: dict) -> dict:
    import torch

    from vlkge.config import load_config
    from vlkge.data.datasets import load_dataset
    from vlkge.evaluation.evaluator import Evaluator
    from vlkge.training.setup import prepare, resolve_device
    from vlkge.training.trainer import Trainer

    torch.set_num_threads(s["threads"])
    # N distinct negatives need N < entities; smaller graphs (Nations: 14) draw with
    # replacement, as PyKEEN always does
    replacement = s["negatives"] >= load_dataset(dataset).num_entities
    if s["regime"] == "1vsall":  # both sides of batch_size triples per step, as PyKEEN's
        regime = ["training.regime=1vsall", "training.loss=ce"]
        batch_size = 2 * s["batch_size"]
    else:
        regime = ["training.regime=negative_sampling", "training.loss=logistic"]
        batch_size = s["batch_size"]
    cfg = load_config(
        overrides=[
            f"training.negatives.replacement={str(replacement).lower()}",
            f"dataset.name={dataset}",
            f"seed={s['seed']}",
            f"device={s.get('device', 'cpu')}",
            f"num_threads={s['threads']}",
            f"model.backbone={model_name}",
            f"model.dim={s['dim']}",
            # PyKEEN's RotatE takes the L2 norm over all 2d real coordinates
            "model.rotate_distance=l2",
            "model.reciprocal=false",
            *regime,
            f"training.epochs={s['epochs']}",
            f"training.batch_size={batch_size}",
            f"training.negatives.num={s['negatives']}",
            "training.negatives.side=both",
            # PyKEEN's BasicNegativeSampler does not reject known triples by default
            f"training.negatives.filter_splits={json.dumps(s['negative_filter'])}",
            "training.optimizer.name=adagrad",
            f"training.optimizer.lr={s['lr']}",
            "training.optimizer.weight_decay=0.0",
            "training.regularizer.name=none",
            "training.checkpoint_every=0",
            "training.progress=false",
            "validation.every=0",
            "evaluation.ties=realistic",
            "evaluation.filter_splits=[train, valid, test]",
            "evaluation.sides=[head, tail]",
        ]
    )
    kg, model = prepare(cfg)
    model.to(resolve_device(cfg["device"]))
    rss_setup = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="vlkge-bench-") as run_dir:
        start, cpu = time.perf_counter(), time.process_time()
        trainer = Trainer(cfg, kg, model, Path(run_dir))
        trainer.fit()
        train_s = time.perf_counter() - start
        train_cpu_s = time.process_time() - cpu
        trace = [
            json.loads(line) for line in (Path(run_dir) / "trace.jsonl").read_text().splitlines()
        ]
    epoch_times = [entry["train_time"] for entry in trace]
    losses = [entry["loss"] for entry in trace]

    eval_times, metrics = [], None
    for _ in range(s["eval_repeats"]):
        start = time.perf_counter()
        evaluator = Evaluator(kg, cfg["evaluation"])
        result = evaluator.evaluate(model, "test")
        eval_times.append(time.perf_counter() - start)
        metrics = metrics or {k: result["both"][k] for k in (*METRICS, "mr", "count")}
    return finish(kg, epoch_times, train_s, train_cpu_s, losses, eval_times, metrics, rss_setup)


# --- PyKEEN -----------------------------------------------------------------------------------
def _xavier_uniform_like_vlkge(tensor):
    """torch's Xavier-uniform over the ``[count, width]`` table, as vlkge initialises it.

    PyKEEN hands complex embeddings over as ``[count, dim, 2]`` (real, imaginary); vlkge's
    complex tables are ``[count, 2 * dim]``, so the bound sqrt(6 / (count + 2 dim)) is the same.
    """
    import torch

    flat = tensor.view(tensor.shape[0], -1)
    torch.nn.init.xavier_uniform_(flat)
    return tensor


def run_pykeen(dataset: str, model_name: str, s: dict) -> dict:
    import torch
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.losses import CrossEntropyLoss, SoftplusLoss
    from pykeen.models import ERModel
    from pykeen.sampling import BasicNegativeSampler
    from pykeen.training import SLCWATrainingLoop, SymmetricLCWATrainingLoop
    from pykeen.training.callbacks import TrainingCallback
    from pykeen.triples import CoreTriplesFactory
    from pykeen.utils import set_random_seed

    from vlkge.data.datasets import load_dataset

    torch.set_num_threads(s["threads"])
    set_random_seed(s["seed"])
    kg = load_dataset(dataset)
    factories = {
        split: CoreTriplesFactory.create(
            mapped_triples=kg.splits[split],
            num_entities=kg.num_entities,
            num_relations=kg.num_relations,
        )
        for split in ("train", "valid", "test")
    }
    train_tf = factories["train"]
    complex_valued = model_name in ("complex", "rotate")
    dtype = torch.cfloat if complex_valued else torch.get_default_dtype()
    representation = dict(shape=s["dim"], initializer=_xavier_uniform_like_vlkge, dtype=dtype)
    relation = dict(representation)
    if model_name == "rotate":  # unit-modulus relations, as PyKEEN's RotatE keeps them
        relation.update(initializer="init_phases", constrainer="complex_normalize")
    model = ERModel(
        triples_factory=train_tf,
        interaction=model_name,  # "distmult" | "complex" | "transe" | "rotate"
        # TransE: the L1 distance (vlkge also normalises the vectors and adds gamma: the
        # closest PyKEEN equivalent, so compare throughput, not quality)
        interaction_kwargs=dict(p=1) if model_name == "transe" else None,
        entity_representations_kwargs=dict(representation),
        relation_representations_kwargs=relation,
        loss=SoftplusLoss(reduction="mean") if s["regime"] != "1vsall" else CrossEntropyLoss(),
        random_seed=s["seed"],
    ).to(s.get("device", "cpu"))
    rss_setup = peak_rss_mb()

    class EpochTimer(TrainingCallback):
        def __init__(self):
            super().__init__()
            self.last = time.perf_counter()
            self.times: list[float] = []

        def post_epoch(self, epoch: int, epoch_loss: float, **kwargs) -> None:
            now = time.perf_counter()
            self.times.append(now - self.last)
            self.last = now

    start, cpu = time.perf_counter(), time.process_time()
    optimizer = torch.optim.Adagrad(model.get_grad_params(), lr=s["lr"])
    if s["regime"] == "1vsall":
        loop = SymmetricLCWATrainingLoop(model=model, triples_factory=train_tf, optimizer=optimizer)
    else:
        loop = SLCWATrainingLoop(
            model=model,
            triples_factory=train_tf,
            optimizer=optimizer,
            negative_sampler=BasicNegativeSampler,
            negative_sampler_kwargs=dict(
                num_negs_per_pos=s["negatives"],
                corruption_scheme=("head", "tail"),
                filtered=bool(s["negative_filter"]),
            ),
        )
    timer = EpochTimer()
    timer.last = time.perf_counter()
    losses = loop.train(
        triples_factory=train_tf,
        num_epochs=s["epochs"],
        batch_size=s["batch_size"],
        use_tqdm=False,
        use_tqdm_batch=False,
        callbacks=timer,
    )
    train_s = time.perf_counter() - start
    train_cpu_s = time.process_time() - cpu

    test = kg.splits["test"]
    eval_times, metrics = [], None
    for _ in range(s["eval_repeats"]):
        start = time.perf_counter()
        evaluator = RankBasedEvaluator(filtered=True)
        result = evaluator.evaluate(
            model=model,
            mapped_triples=test,
            additional_filter_triples=[kg.splits["train"], kg.splits["valid"]],
            batch_size=s["eval_batch_size"] or len(test),
            use_tqdm=False,
        )
        eval_times.append(time.perf_counter() - start)
        if metrics is None:
            metrics = {
                ours: float(result.get_metric(f"both.realistic.{theirs}"))
                for ours, theirs in PYKEEN_METRICS.items()
            }
            metrics["count"] = int(result.get_metric("both.realistic.count"))
    return finish(
        kg, timer.times, train_s, train_cpu_s, list(losses), eval_times, metrics, rss_setup
    )


# --- shared -----------------------------------------------------------------------------------
def steady_epoch_s(epoch_times: list[float]) -> float:
    """Median epoch time without the first epoch (one-time work), unless it is the only one."""
    steady = epoch_times[1:] or epoch_times
    return statistics.median(steady) if steady else float("nan")


def finish(kg, epoch_times, train_s, train_cpu_s, losses, eval_times, metrics, rss_setup) -> dict:
    return {
        "num_train": int(len(kg.splits["train"])),
        "num_entities": kg.num_entities,
        "epochs_run": len(epoch_times),
        "train_s": train_s,
        "train_cpu_s": train_cpu_s,
        "epoch_times": epoch_times,  # epoch_s and triples_per_s: derive_ratios
        "final_loss": losses[-1] if losses else float("nan"),
        "eval_s": min(eval_times) if eval_times else None,  # --eval-repeats 0: not evaluated
        "eval_times": eval_times,
        "metrics": metrics,
        "peak_rss_setup_mb": rss_setup,
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": peak_gpu_mb(),
    }


def peak_gpu_mb() -> float | None:
    """Peak memory allocated on the GPU by this process (None without CUDA)."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def worker(args) -> None:
    settings = json.loads(args.settings)
    runner = run_vlkge if args.worker == "vlkge" else run_pykeen
    result = runner(args.dataset, args.model, settings)
    Path(args.result_file).write_text(json.dumps(result), encoding="utf-8")


def run_in_subprocess(library: str, dataset: str, model: str, settings: dict) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(settings["threads"]))
    env.setdefault("MKL_NUM_THREADS", str(settings["threads"]))
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            library,
            "--dataset",
            dataset,
            "--model",
            model,
            "--settings",
            json.dumps(settings),
            "--result-file",
            str(out),
        ]
        start, load_before = time.perf_counter(), os.getloadavg()[0]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            return {"error": f"exit {proc.returncode}:\n{tail}"}
        result = json.loads(out.read_text(encoding="utf-8"))
        result["process_s"] = time.perf_counter() - start
        # 1-minute load average around the run (includes the run's own threads)
        result["load_average"] = [load_before, os.getloadavg()[0]]
        return result


def derive_ratios(row: dict) -> dict:
    """Per-library throughput from the epoch times, and the vlkge / PyKEEN ratios."""
    for library in LIBRARIES:
        done = row[library]
        if done.get("epoch_times"):
            done["epoch_s"] = steady_epoch_s(done["epoch_times"])
            done["triples_per_s"] = done["num_train"] / done["epoch_s"]
    row["train_speedup"] = ratio(
        row["vlkge"].get("triples_per_s"), row["pykeen"].get("triples_per_s")
    )
    row["eval_time_ratio"] = ratio(row["vlkge"].get("eval_s"), row["pykeen"].get("eval_s"))
    return row


def fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec)


def ratio(a, b) -> float | None:
    try:
        return a / b
    except (TypeError, ZeroDivisionError):
        return None


def table(rows: list[dict]) -> str:
    # on a GPU the peak GPU memory (torch's allocator), else the peak resident set
    on_gpu = any(row[lib].get("peak_gpu_mb") for row in rows for lib in LIBRARIES)
    memory, key = ("GPU", "peak_gpu_mb") if on_gpu else ("RSS", "peak_rss_mb")
    header = (
        f"{'dataset':<9} {'model':<9} | {'MRR vl':>6} {'MRR pk':>6} | {'H@10 vl':>7} "
        f"{'H@10 pk':>7} | {'train tr/s vl':>13} {'pk':>9} {'vl/pk':>6} | "
        f"{'eval s vl':>9} {'pk':>7} {'vl/pk':>6} | {memory + ' MB vl':>9} {'pk':>6}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        vl, pk = row["vlkge"], row["pykeen"]
        vm, pm = vl.get("metrics") or {}, pk.get("metrics") or {}
        lines.append(
            f"{row['dataset']:<9} {row['model']:<9} | {fmt(vm.get('mrr'), '.4f'):>6} "
            f"{fmt(pm.get('mrr'), '.4f'):>6} | {fmt(vm.get('hits@10'), '.4f'):>7} "
            f"{fmt(pm.get('hits@10'), '.4f'):>7} | {fmt(vl.get('triples_per_s'), ',.0f'):>13} "
            f"{fmt(pk.get('triples_per_s'), ',.0f'):>9} {fmt(row['train_speedup'], '.2f'):>6} | "
            f"{fmt(vl.get('eval_s'), '.3f'):>9} {fmt(pk.get('eval_s'), '.3f'):>7} "
            f"{fmt(row['eval_time_ratio'], '.2f'):>6} | {fmt(vl.get(key), '.0f'):>9} "
            f"{fmt(pk.get(key), '.0f'):>6}"
        )
        for lib in LIBRARIES:
            if "error" in row[lib]:
                lines.append(f"    {lib} failed: {row[lib]['error']}")
    busy = max(
        (max(row[lib].get("load_average", [0.0])) for row in rows for lib in LIBRARIES),
        default=0.0,
    )
    threads = rows[0]["threads"] if rows else 0
    if busy > threads + 0.5:
        lines.append(
            f"WARNING: the 1-minute load average reached {busy:.1f} during the runs "
            f"({threads} thread(s) requested, {os.cpu_count()} cores): other processes were "
            "competing for the CPU and these timings are noisy."
        )
    lines.append(
        "train tr/s: positive training triples per second (median epoch after the first); "
        "vl/pk > 1: vlkge "
        "faster. eval s: test split, filtered, best of repeats; vl/pk < 1: vlkge faster."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=MODELS)
    parser.add_argument("--epochs", type=int, default=None, help="default 100 (3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="few epochs, one evaluation")
    parser.add_argument("--dim", type=int, default=200)
    parser.add_argument(
        "--regime", choices=("negative_sampling", "1vsall"), default="negative_sampling"
    )
    parser.add_argument("--negatives", type=int, default=32, help="N negatives per positive")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu | cuda (both libraries)")
    parser.add_argument(
        "--negative-filter",
        choices=("none", "train"),
        default="none",
        help="reject training triples as negatives (vlkge: redraws; PyKEEN: drops them)",
    )
    parser.add_argument(
        "--eval-repeats",
        type=int,
        default=None,
        help="default 3 (1 if quick); 0 skips evaluation (training throughput only)",
    )
    parser.add_argument("--eval-batch-size", type=int, default=0, help="PyKEEN; 0: whole split")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument(
        "--table-from",
        type=Path,
        nargs="+",
        default=None,
        help="print one table of saved --json-out files (runs with the same settings)",
    )
    # internal: one run in a subprocess
    parser.add_argument("--worker", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        worker(args)
        return 0
    if args.table_from:
        return print_saved(args.table_from)

    settings = {
        "epochs": args.epochs or (3 if args.quick else 100),
        "regime": args.regime,
        "dim": args.dim,
        "negatives": args.negatives,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "threads": args.threads,
        "negative_filter": [] if args.negative_filter == "none" else ["train"],
        "eval_repeats": (
            args.eval_repeats if args.eval_repeats is not None else (1 if args.quick else 3)
        ),
        "eval_batch_size": args.eval_batch_size,
    }
    if args.device != "cpu":  # saved CPU runs carry no device key: their settings still match
        settings["device"] = args.device
    print("settings:", json.dumps(settings), flush=True)
    rows = []
    for dataset in args.datasets:
        for model in args.models:
            row = {"dataset": dataset, "model": model, "threads": settings["threads"]}
            for library in LIBRARIES:
                print(f"  {dataset} {model} {library} ...", end=" ", flush=True)
                row[library] = run_in_subprocess(library, dataset, model, settings)
                done = row[library]
                print("failed" if "error" in done else f"{done['process_s']:.1f}s", flush=True)
            rows.append(derive_ratios(row))
            if args.json_out:  # after every row: a long run stopped early keeps what it measured
                save(args.json_out, settings, rows)
    print()
    print(table(rows))
    if args.json_out:
        print(f"\nwrote {args.json_out}")
    return 1 if any("error" in row[lib] for row in rows for lib in LIBRARIES) else 0


def save(path: Path, settings: dict, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "settings": settings,
        "python": sys.version.split()[0],
        "versions": versions(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "results": rows,
    }
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")


def print_saved(paths: list[Path]) -> int:
    """One table of the rows of saved runs; they must share their settings."""
    saved = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    for path, other in zip(paths[1:], saved[1:], strict=True):
        if other["settings"] != saved[0]["settings"]:
            print(f"error: {path} was run with other settings than {paths[0]}", file=sys.stderr)
            return 2
    print("settings:", json.dumps(saved[0]["settings"]))
    print(table([derive_ratios(row) for run in saved for row in run["results"]]))
    return 0


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("vlkge", "pykeen", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


if __name__ == "__main__":
    sys.exit(main())
