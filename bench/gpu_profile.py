#!/usr/bin/env python
"""Count what a training step launches and waits for on a GPU: kernels, host syncs, copies.

Usage::

    python bench/gpu_profile.py [--runs transe:negative_sampling distmult:1vsall ...]
                                [--device cuda] [--threads 4] [--json-out FILE]

Why: on the H100 (docs/results.md, "On a GPU: one H100, against PyKEEN (issue 4)") a WN9-IMG
epoch took a few hundred milliseconds and TransE in the paper's regime trained slower than
PyKEEN: at that size per-step overheads (kernel launches, the host waiting for the device)
decide, not arithmetic, and wall clocks alone cannot say which. ``bench/epoch_split.py`` splits
an epoch by phase only on a CPU (a GPU would need a sync per phase).

Each run ``MODEL:REGIME`` builds ``configs/wn9-img/MODEL.yaml`` as ``vlkge train`` does (the
paper's regime: d 768, N 100, batch 512; ``1vsall``: its cross-entropy over all entities, d 200,
512 queries a step, as ``bench/pykeen_compare.py --regime 1vsall --dim 200 --batch-size 256``),
trains one warm-up epoch (compiled kernels, allocator), then runs ``Trainer.train_epoch`` (the
loop ``vlkge train`` runs: batches, negatives, loss, backward, the loss's one ``.item()``,
optimiser) once under ``torch.profiler`` and once without it, and one validation evaluation
under the profiler. Reported per training step: CUDA kernels run and their summed device time,
launch calls (``cudaLaunchKernel``, ``cuLaunchKernel``, ...), host waits
(``cudaStreamSynchronize`` and the other ``*Synchronize``), copies by direction (device to
host, host to device), every CUDA runtime / driver call by name, the aten operators dispatched,
the operators that make the host wait for the device (``.item()``'s
``aten::_local_scalar_dense``, ``aten::nonzero``, ...: counted on a CPU too), and which phase
and operator issued each wait, copy and such operator (phases: ``vlkge.loss`` (sampling
included), ``vlkge.sampling``, ``Optimizer.step``, the autograd engine's backward, else
``loop``); plus the wall time per step with and without the profiler and the top operators by
device time (by CPU time on a CPU, where every CUDA count is zero: a rehearsal only).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from vlkge.config import load_config
from vlkge.evaluation.evaluator import Evaluator
from vlkge.training.setup import prepare, resolve_device
from vlkge.training.trainer import Trainer

RUNS = ("transe:negative_sampling", "distmult:1vsall")
ONE_VS_ALL = ["training.regime=1vsall", "training.loss=ce", "model.dim=200"]
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
#: operators that wait for a CUDA device to read a value or a size (counted on a CPU too)
SYNC_OPS = (
    "aten::_local_scalar_dense",  # .item(), bool(), int() of a tensor
    "aten::nonzero",
    "aten::masked_select",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
)
PHASES = ("vlkge.", "Optimizer.step", "autograd::engine")


def labelled(name: str, fn):
    """``fn`` inside a profiler range called ``name``, so events can be attributed to it."""

    def wrapper(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)

    return wrapper


def issuer(event) -> str:
    """``phase | operator`` of a host-side event: the nearest labelled ancestor and the
    outermost aten operator around it (``aten::item`` for a ``.item()``)."""
    phase, op, parent = "loop", None, event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            op = parent.name
        elif phase == "loop" and parent.name.startswith(PHASES):
            phase = parent.name.split(":")[0] if "autograd" in parent.name else parent.name
        parent = parent.cpu_parent
    return f"{phase} | {op or '-'}"


def summarise(prof, steps: int, wall_s: float) -> dict:
    """Per-step counts of one profiled stretch of ``steps`` steps."""
    runtime, kernels, copies, issuers, ops = Counter(), Counter(), Counter(), Counter(), Counter()
    kernel_us = 0.0
    for event in prof.events():
        if event.device_type == DeviceType.CUDA:
            if event.name.startswith("Memcpy"):
                kind = next((k for k in ("DtoH", "HtoD", "DtoD") if k in event.name), "other")
                copies[kind] += 1
            elif event.name.startswith("Memset"):
                copies["memset"] += 1
            else:
                kernels[event.name] += 1
                kernel_us += event.time_range.elapsed_us()
        elif event.name.startswith(("cuda", "cu")) and not event.name.startswith("cudnn"):
            runtime[event.name] += 1
            if event.name in SYNCS or event.name.startswith("cudaMemcpy"):
                issuers[f"{event.name} <- {issuer(event)}"] += 1
        elif event.name.startswith("aten::"):
            ops[event.name] += 1
            if event.name in SYNC_OPS:
                issuers[f"{event.name} <- {issuer(event)}"] += 1
    launches = sum(n for name, n in runtime.items() if "LaunchKernel" in name)
    launches += runtime["cudaGraphLaunch"]

    def per(count) -> float:
        return count / steps

    return {
        "steps": steps,
        "wall_ms_per_step": 1e3 * wall_s / steps,
        "kernels_per_step": per(sum(kernels.values())),
        "kernel_ms_per_step": kernel_us / 1e3 / steps,
        "launch_calls_per_step": per(launches),
        "syncs_per_step": {name: per(runtime[name]) for name in SYNCS},
        "copies_per_step": {kind: per(n) for kind, n in sorted(copies.items())},
        "aten_ops_per_step": per(sum(ops.values())),  # nested calls counted too
        "sync_ops_per_step": {name: per(ops[name]) for name in SYNC_OPS if ops[name]},
        "runtime_calls_per_step": {k: per(n) for k, n in runtime.most_common()},
        "sync_and_copy_issuers_per_step": {k: per(n) for k, n in issuers.most_common()},
        "top_kernels_per_step": {k: per(n) for k, n in kernels.most_common(15)},
    }


def top_ops(prof, on_gpu: bool, limit: int = 20) -> list[dict]:
    rows = []
    for avg in prof.key_averages():
        device_us = getattr(avg, "self_device_time_total", None)
        if device_us is None:  # torch before the device_* names
            device_us = getattr(avg, "self_cuda_time_total", 0.0)
        rows.append(
            {
                "name": avg.key,
                "count": avg.count,
                "self_cpu_ms": avg.self_cpu_time_total / 1e3,
                "self_device_ms": device_us / 1e3,
            }
        )
    key = "self_device_ms" if on_gpu else "self_cpu_ms"
    return sorted(rows, key=lambda row: -row[key])[:limit]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_run(spec: str, device_name: str, threads: int, overrides: list[str]) -> dict:
    model_name, _, regime = spec.partition(":")
    regime = regime or "negative_sampling"
    torch._dynamo.reset()  # each run compiles its own kernels, as a run of its own would
    extra = ONE_VS_ALL if regime == "1vsall" else [f"training.regime={regime}"]
    cfg = load_config(
        f"configs/wn9-img/{model_name}.yaml",
        [
            *extra,
            f"device={device_name}",
            f"num_threads={threads}",
            "training.progress=false",
            "training.checkpoint_every=0",
            "validation.every=0",
            *overrides,
        ],
    )
    kg, model = prepare(cfg)
    device = resolve_device(cfg["device"])
    model.to(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory(prefix="vlkge-gpu-profile-") as run_dir:
        trainer = Trainer(cfg, kg, model, Path(run_dir))
        regime_obj = trainer.regime
        regime_obj.loss = labelled("vlkge.loss", regime_obj.loss)
        sampler = getattr(regime_obj, "sampler", None)
        if sampler is not None:
            sampler.sample = labelled("vlkge.sampling", sampler.sample)
        steps = regime_obj.num_batches()

        def epoch() -> float:
            synchronize(device)
            start = time.perf_counter()
            trainer.train_epoch()
            synchronize(device)
            return time.perf_counter() - start

        warmup_s = epoch()  # compiled kernels, allocator, cuBLAS handles
        plain_s = epoch()
        with profile(activities=activities) as prof:
            profiled_s = epoch()
        train = summarise(prof, steps, profiled_s)
        train["plain_wall_ms_per_step"] = 1e3 * plain_s / steps
        train["warmup_epoch_s"] = warmup_s
        train["top_ops"] = top_ops(prof, device.type == "cuda")

        evaluator = Evaluator(kg, cfg["evaluation"], precision=cfg["precision"])
        split = cfg["validation"]["split"]
        with torch.no_grad():
            evaluator.evaluate(model, split)  # warm-up
            with profile(activities=activities) as prof:
                synchronize(device)
                start = time.perf_counter()
                evaluator.evaluate(model, split)
                synchronize(device)
                eval_s = time.perf_counter() - start
        evaluation = summarise(prof, 1, eval_s)  # "per step": the whole evaluation
        evaluation["split"] = split
        evaluation["triples"] = int(len(kg.splits[split]))
        evaluation["top_ops"] = top_ops(prof, device.type == "cuda", limit=10)
    return {
        "run": spec,
        "model": model_name,
        "regime": regime,
        "dim": cfg["model"]["dim"],
        "batch_size": cfg["training"]["batch_size"],
        "negatives": cfg["training"]["negatives"]["num"] if regime != "1vsall" else None,
        "train": train,
        "validation": evaluation,
        "peak_gpu_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), metavar="MODEL:REGIME")
    parser.add_argument("--device", default="cuda", help="cuda | cpu (cpu: a rehearsal)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    payload = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "threads": args.threads,
        "runs": [],
    }
    failed = False
    for spec in args.runs:
        start = time.perf_counter()
        try:
            row = profile_run(spec, args.device, args.threads, args.set)
        except Exception as exc:  # the next run still runs; the JSON says what failed
            failed = True
            row = {"run": spec, "error": f"{type(exc).__name__}: {exc}"}
            print(f"{spec}: failed: {row['error']}", flush=True)
        else:
            t, v = row["train"], row["validation"]
            print(
                f"{spec}: {t['steps']} steps, {t['plain_wall_ms_per_step']:.2f} ms/step "
                f"({t['wall_ms_per_step']:.2f} profiled, kernels {t['kernel_ms_per_step']:.2f}); "
                f"per step: {t['kernels_per_step']:.0f} kernels, "
                f"{t['launch_calls_per_step']:.0f} launches, "
                f"{t['syncs_per_step']['cudaStreamSynchronize']:.1f} stream syncs, "
                f"{t['copies_per_step'].get('DtoH', 0):.1f} DtoH copies, "
                f"{t['aten_ops_per_step']:.0f} aten ops | validation {v['wall_ms_per_step']:.0f} "
                f"ms, {v['kernels_per_step']:.0f} kernels, "
                f"{v['syncs_per_step']['cudaStreamSynchronize']:.0f} stream syncs "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        payload["runs"].append(row)
        if args.json_out:  # after every run: a run stopped by a timeout keeps the others
            args.json_out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
