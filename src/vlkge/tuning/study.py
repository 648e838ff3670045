"""A search's settings (``DIR/tune.yaml``), its study in the database, its budget of trial slots,
and what every trial of it shares: the base config, the sampler, the pruner (docs/tuning.md).

The study records what it searches (the base config without host-local keys, and the space):
a rerun, another host or ``--resume`` with another config or space is refused in one line
rather than mixing two searches in one study.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml

from vlkge import config as config_mod
from vlkge.errors import VlkgeError
from vlkge.files import write_text
from vlkge.tuning import recovery
from vlkge.tuning.space import SearchSpace, parse_space
from vlkge.tuning.storage import shown

SETTINGS = "tune.yaml"
TRIALS = "trials"  # the run folders, one per trial slot
DEFINITION = "vlkge:search"  # study user attribute: what the study searches
BUDGET = "vlkge:trials"  # study user attribute: the number of trial slots
#: config keys that may differ between the hosts and sessions of one search
HOST_KEYS = (
    "dataset.data_dir",
    "features.cache_dir",
    "device",
    "num_threads",
    "training.progress",
    "tracking.",
    "report.",
)


@dataclass
class TuneSettings:
    """What ``vlkge tune`` searches, and where: ``config`` is the resolved base config."""

    folder: Path
    study: str
    storage: str  # the URL as tune.yaml keeps it: password hidden
    trials: int
    config: dict
    space: SearchSpace

    @property
    def metric(self) -> str:
        return self.config["validation"]["metric"]

    @property
    def split(self) -> str:
        return self.config["validation"]["split"]

    @property
    def seed(self) -> int:
        seed = self.space.settings["seed"]
        return self.config["seed"] if seed is None else seed

    def run_folder(self, trial: optuna.trial.FrozenTrial) -> Path:
        return self.folder / TRIALS / f"{recovery.root_number(trial):04d}"

    def definition(self) -> dict:
        """What every session and host of the search must agree on."""
        cfg = copy.deepcopy(self.config)
        for key in config_mod.dotted_keys(cfg):
            if config_mod.key_in(key, HOST_KEYS):
                *parents, leaf = key.split(".")
                node = cfg
                for part in parents:
                    node = node[part]
                node.pop(leaf)
        return {"config": cfg, "space": self.space.as_dict()}

    def save(self) -> None:
        data = {
            "study": self.study,
            "storage": self.storage,
            "trials": self.trials,
            "space": self.space.as_dict(),
            "config": self.config,
        }
        header = (
            "# vlkge tune: the search of this folder (`vlkge tune --resume DIR` continues it,\n"
            "# `vlkge tune DIR --show` shows its trials)\n"
        )
        write_text(self.folder / SETTINGS, header + yaml.safe_dump(data, sort_keys=False))


def is_search_folder(folder: str | Path) -> bool:
    return (Path(folder) / SETTINGS).is_file()


def load_settings(folder: str | Path) -> TuneSettings:
    folder = Path(folder)
    path = folder / SETTINGS
    if not path.is_file():
        raise VlkgeError(f"{folder}: not a vlkge tune folder (no {SETTINGS})")
    data = config_mod.load_yaml(path)
    try:
        cfg = config_mod.validate(data["config"])
        space = parse_space(data["space"], str(path))
        return TuneSettings(folder, data["study"], data["storage"], data["trials"], cfg, space)
    except (KeyError, TypeError):
        raise VlkgeError(f"{path}: not a tune.yaml written by vlkge tune") from None


def apply_params(base: dict, values: dict) -> dict:
    """``base`` with the searched keys set to ``values`` (config values), validated."""
    cfg = copy.deepcopy(base)
    for key, value in values.items():
        config_mod.set_key(cfg, key, value, source="trial")
    return config_mod.validate(cfg)


def trial_config(base: dict, values: dict) -> dict:
    """A trial's config: scored on the validation split only (the test split is scored once,
    for the best trial)."""
    cfg = copy.deepcopy(base)
    cfg["evaluation"]["splits"] = [cfg["validation"]["split"]]
    return apply_params(cfg, values)


def open_study(settings: TuneSettings, storage: optuna.storages.RDBStorage) -> optuna.Study:
    """The study of ``settings`` (created when missing); refused when it searches something
    else."""
    name, where = settings.study, shown(settings.storage)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
        study.set_user_attr(DEFINITION, settings.definition())
        return study
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
    saved = study.user_attrs.get(DEFINITION)
    for _ in range(50):  # another process created the study a moment ago
        if saved is not None:
            break
        time.sleep(0.1)
        saved = study.user_attrs.get(DEFINITION)
    if saved is None:
        raise VlkgeError(f"study {name!r} in {where} was not made by vlkge tune; use --study NAME")
    changed = config_mod.diff(saved, settings.definition())
    if changed:
        keys = ", ".join(sorted(changed)[:5]) + (" ..." if len(changed) > 5 else "")
        raise VlkgeError(
            f"study {name!r} in {where} searches another config or space (differs in {keys}); "
            "use a new --out folder or --study name"
        )
    return study


def extend_budget(
    settings: TuneSettings, study: optuna.Study, storage: optuna.storages.RDBStorage
) -> int:
    """Add trial slots until the study has ``settings.trials`` of them (a grid's points, in
    order, for the grid sampler); returns the budget, which never shrinks."""
    with recovery.study_lock(storage):
        have = study.user_attrs.get(BUDGET, 0)
        points = None
        if settings.space.settings["sampler"] == "grid":
            points = settings.space.grid_points(settings.seed)
        wanted = settings.trials if points is None else min(settings.trials, len(points))
        for slot in range(have, wanted):
            study.enqueue_trial({} if points is None else points[slot])
        if wanted > have:
            study.set_user_attr(BUDGET, wanted)
    return max(have, wanted)


def budget(study: optuna.Study) -> int:
    return study.user_attrs.get(BUDGET, 0)


def build_sampler(settings: TuneSettings, trial_number: int) -> optuna.samplers.BaseSampler:
    """The sampler that draws trial ``trial_number`` (seeded per trial, so a search does not
    depend on which worker draws what)."""
    space = settings.space.settings
    seed = (settings.seed + trial_number) % 2**32
    if space["sampler"] == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=space["startup_trials"], constant_liar=True
        )
    return optuna.samplers.RandomSampler(seed=seed)  # a grid's points are fixed in its slots


def build_pruner(settings: TuneSettings) -> optuna.pruners.BasePruner:
    space = settings.space.settings
    if space["pruner"] == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=space["startup_trials"], n_warmup_steps=space["warmup_epochs"]
        )
    searched = {p.key for p in settings.space.parameters}
    epochs = "auto" if "training.epochs" in searched else settings.config["training"]["epochs"]
    if space["pruner"] == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=space["min_epochs"],
            max_resource=epochs,
            reduction_factor=space["reduction_factor"],
        )
    if space["pruner"] == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=space["min_epochs"], reduction_factor=space["reduction_factor"]
        )
    return optuna.pruners.NopPruner()
