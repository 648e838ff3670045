"""One configuration system: a documented default YAML, user overrides, strict validation.

``configs/default.yaml`` inside the package lists every key with its default and a comment;
``vlkge config show`` prints it. A user file overrides only what differs, ``--set a.b=value``
overrides single keys (values parsed as YAML). Unknown keys are rejected with a suggestion,
values are checked for type, allowed choices and range.
"""

from __future__ import annotations

import copy
import difflib
import functools
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vlkge.errors import ConfigError, echo

CHOICES: dict[str, tuple] = {
    "dataset.setting": ("transductive", "inductive"),
    "dataset.unseen_entities": (None, "error", "keep", "drop"),
    "model.backbone": ("transe", "distmult", "complex", "rotate"),
    "model.rotate_distance": ("modulus", "l2"),
    "model.fusion": ("average", "concat", "weighted"),
    "features.preprocess": ("none", "center", "pca", "whiten"),
    "encoder.finetune": ("none", "head", "layers"),
    "training.regime": ("negative_sampling", "1vsall", "kvsall"),
    "training.loss": ("logistic", "self_adversarial", "bce", "ce"),
    "training.negatives.side": ("both", "head", "tail"),
    "training.negatives.pool": ("all", "relation"),
    "training.optimizer.name": ("adagrad", "adam", "sgd"),
    "training.regularizer.name": ("none", "n3", "l2"),
    "training.progress": ("auto", True, False),
    "validation.split": ("train", "valid", "test"),
    "validation.metric": ("mrr", "hits@1", "hits@3", "hits@10"),
    "evaluation.ties": ("realistic", "optimistic", "pessimistic"),
    "evaluation.candidates": ("all", "relation_pool"),
    "zero_shot.name_source": ("names", "label", "text"),
    "compile": ("auto", True, False),
    "precision": ("fp32", "bf16", "fp16"),
    "tracking.tensorboard": ("auto", True, False),
}
POSITIVE = {
    "num_threads",
    "features.width",
    "model.dim",
    "model.neighbour_temperature",
    "evaluation.calibration.temperature",
    "training.epochs",
    "training.batch_size",
    "training.negatives.num",
    "training.optimizer.lr",
    "evaluation.max_scores",
    "evaluation.max_memory_mb",
    "encoder.batch_size",
    "encoder.finetune_layers",
    "encoder.finetune_lr",
    "report.top_k",
}
NON_NEGATIVE = {
    "seed",
    "training.checkpoint_every",
    "model.gamma",
    "model.adapter",
    "model.structural_dropout",
    "model.dropout",
    "model.neighbours",
    "evaluation.calibration.bank",
    "evaluation.calibration.weights",
    "training.adversarial_temperature",
    "training.regularizer.weight",
    "training.optimizer.weight_decay",
    "training.label_smoothing",
    "validation.every",
    "validation.patience",
    "encoder.workers",
    "report.samples",
}
BELOW_ONE = {"training.label_smoothing", "model.structural_dropout", "model.dropout"}
# The upper bound of every other numeric key (list keys: of each item): far above any useful
# setting, yet low enough that the sizes and counts built from them stay within int64 and
# their products within what can be allocated key by key, so a typo (an extra zero digit or
# ten) is one line naming the key instead of an overflow or a failed allocation.
AT_MOST: dict[str, int | float] = {
    "seed": 2**32 - 1,  # numpy's seed range
    "num_threads": 4096,
    "model.dim": 65536,
    "features.width": 65536,
    "model.gamma": 1e6,
    "model.adapter": 65536,
    "model.neighbours": 4096,
    "model.neighbour_temperature": 1e3,
    "encoder.batch_size": 2**16,
    "encoder.workers": 1024,
    "encoder.finetune_layers": 1024,
    "encoder.finetune_lr": 1e3,
    "training.epochs": 2**20,
    "training.batch_size": 2**24,
    "training.adversarial_temperature": 1e3,
    "training.negatives.num": 2**20,
    "training.optimizer.lr": 1e3,
    "training.optimizer.weight_decay": 1e3,
    "training.regularizer.weight": 1e3,
    "training.checkpoint_every": 2**20,
    "validation.every": 2**20,
    "validation.patience": 2**20,
    "evaluation.calibration.weights": 1e3,
    "evaluation.calibration.temperature": 1e3,
    "evaluation.calibration.bank": 2**24,
    "evaluation.max_scores": 2**40,
    "evaluation.max_memory_mb": 2**30,  # 1 PiB
    "report.samples": 1000,
    "report.top_k": 1000,
}
# keys whose default is null but whose value has a type
NULLABLE_TYPES: dict[str, type] = {
    "num_threads": int,
    "dataset.data_dir": str,
    "dataset.unseen_entities": str,
    "features.cache_dir": str,
    "features.width": int,
    "report.zero_shot": str,
    "evaluation.max_memory_mb": float,
}
SUBSETS: dict[str, tuple] = {
    "model.modalities": ("image", "text"),
    "evaluation.sides": ("head", "tail"),
    "evaluation.splits": ("train", "valid", "test"),
    "evaluation.filter_splits": ("train", "valid", "test"),
    "training.negatives.filter_splits": ("train", "valid", "test"),
    "zero_shot.anchor_modalities": ("image", "text"),
}
EMPTY_SUBSETS_OK = {"training.negatives.filter_splits", "model.modalities"}
# list keys whose items are free values of one type (names are checked against the dataset
# when a run starts); numeric items take the key's bounds above
ITEMS: dict[str, type] = {
    "evaluation.pool_same_split_relations": str,
    "evaluation.exclude_relations": str,
    "evaluation.calibration.weights": float,
}
# keys whose value is a free mapping with data-dependent keys (relation names): a file or
# ``--set key={...}`` replaces the whole mapping, ``--set key.entry=value`` sets one entry;
# the value is the type of every entry's value. Entry names are checked against the dataset
# when a run starts.
MAPPINGS: dict[str, type] = {
    "dataset.inverse_relations": str,
    "training.subsample": float,
    "zero_shot.templates": str,
    "zero_shot.head_templates": str,
}
UNIT_INTERVAL = {"training.subsample"}  # mapping values in [0, 1]


def default_text() -> str:
    """The documented default configuration, comments included."""
    return resources.files("vlkge").joinpath("configs/default.yaml").read_text(encoding="utf-8")


def defaults() -> dict:
    """A fresh copy of the defaults (parsed once: every validation and suggestion needs them)."""
    return copy.deepcopy(_parsed_defaults())


@functools.cache
def _parsed_defaults() -> dict:
    return yaml.safe_load(default_text())


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    except ValueError as exc:  # a value YAML cannot build: a date out of range, a huge int
        raise ConfigError(f"{path}: invalid value ({echo(exc, quote=False)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config must be a mapping of sections, not {type(data).__name__}"
        )
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> (``a.b``, YAML-parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {echo(text)}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError):  # ValueError: a date out of range, a huge int
        value = raw
    return key.strip(), value


def _merge(base: dict, update: dict, prefix: str = "", source: str = "config") -> None:
    for key, value in update.items():
        path = f"{prefix}{key}"
        if key not in base:
            close = suggest(path, [str(k) for k in base])
            hint = f"; did you mean {close}?" if close else ""
            raise ConfigError(f"{source}: unknown key {echo(path)}{hint}")
        if path in MAPPINGS:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {path} must be a mapping (relation: value)")
            base[key] = dict(value)
        elif isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {path} must be a mapping")
            _merge(base[key], value, f"{path}.", source)
        else:
            base[key] = value


def dotted_keys(cfg: dict, prefix: str = "") -> list[str]:
    """Every leaf key of ``cfg`` as ``section.key`` (free mappings count as leaves)."""
    out = []
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in MAPPINGS:
            out.extend(dotted_keys(value, f"{path}."))
        else:
            out.append(path)
    return out


def suggest(path: str, siblings: list[str]) -> str | None:
    """The key a misspelt ``path`` most likely meant: a close one of its ``siblings`` (the
    keys of its section), else a key of another section with the same name (``training.dim``
    -> ``model.dim``), else the closest dotted key."""
    prefix, _, leaf = path.rpartition(".")
    close = difflib.get_close_matches(leaf, siblings, n=1)
    if close:
        return f"{prefix}.{close[0]}" if prefix else close[0]
    every = dotted_keys(defaults())
    same = [k for k in every if k.rsplit(".", 1)[-1] == leaf]
    close = same or difflib.get_close_matches(path, every, n=1, cutoff=0.75)
    return close[0] if close else None


def key_in(key: str, keys) -> bool:
    """Whether dotted ``key`` is one of ``keys``, where ``section.`` stands for every key of
    the section."""
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in keys)


def changed_keys(cfg: dict) -> set[str]:
    """Dotted keys of ``cfg`` whose value differs from the default (mappings as a whole)."""
    base = defaults()

    def value(node: dict, key: str) -> Any:
        for part in key.split("."):
            node = node[part]
        return node

    return {k for k in dotted_keys(cfg) if value(cfg, k) != value(base, k)}


def set_key(cfg: dict, dotted: str, value: Any, source: str = "--set") -> None:
    """Set ``a.b.c`` in ``cfg`` (rejecting unknown keys); ``mapping.entry`` sets one entry of a
    free mapping (:data:`MAPPINGS`), keeping its other entries."""
    for mapping in MAPPINGS:
        if dotted.startswith(f"{mapping}.") and len(dotted) > len(mapping) + 1:
            node = cfg
            for part in mapping.split("."):
                node = node[part]
            value = {**node, dotted[len(mapping) + 1 :]: value}
            dotted = mapping
            break
    update: dict = {}
    node = update
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    _merge(cfg, update, source=source)


def _check_mapping(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{path} must be a mapping (relation: value), not {echo(value)}")
    out = {}
    for key, entry in value.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{path}: keys must be relation names, not {echo(key)}")
        entry = _check_value(entry, MAPPINGS[path], path, f"{path}.{echo(key, quote=False)}")
        if path in UNIT_INTERVAL and not 0.0 <= entry <= 1.0:
            raise ConfigError(
                f"{path}.{echo(key, quote=False)} must be a fraction in [0, 1], not {echo(entry)}"
            )
        out[key] = entry
    return out


def _as_float(value: Any) -> Any:
    """Ints and numeric strings as floats (YAML reads 1e-3, without a dot, as a string; an
    int beyond the float range is infinite); anything else unchanged, for the type check to
    reject."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _is_choice(value: Any, choices: tuple) -> bool:
    """``value`` is one of ``choices`` as written: 1 is not ``true``, 0.0 is not ``false``."""
    return any(value == c and type(value) is type(c) for c in choices)


def _check(value: Any, default: Any, path: str) -> Any:
    if path in CHOICES:
        if not _is_choice(value, CHOICES[path]):
            allowed = ", ".join("null" if c is None else str(c) for c in CHOICES[path])
            raise ConfigError(f"{path} must be one of {allowed}, not {echo(value)}")
        return value
    if path in SUBSETS:
        empty_ok = path in EMPTY_SUBSETS_OK
        kind = "a list" if empty_ok else "a non-empty list"
        allowed = list(SUBSETS[path])
        if not isinstance(value, list) or not (value or empty_ok):
            raise ConfigError(f"{path} must be {kind} drawn from {allowed}, not {echo(value)}")
        for item in value:
            if not _is_choice(item, SUBSETS[path]):
                raise ConfigError(
                    f"{path} must be {kind} drawn from {allowed}; {echo(item)} is not one of them"
                )
        return value
    if path in ITEMS:
        if not isinstance(value, list):
            raise ConfigError(f"{path} must be list, not {type(value).__name__} {echo(value)}")
        return [
            _check_value(item, ITEMS[path], path, f"{path}[{i}]") for i, item in enumerate(value)
        ]
    expected = NULLABLE_TYPES.get(path) if default is None else type(default)
    if value is None:
        if default is None:
            return None
        raise ConfigError(f"{path} must not be null")
    return _check_value(value, expected, path, path)


def _check_value(value: Any, expected: type, path: str, label: str) -> Any:
    """One scalar of key ``path`` (a list item or mapping entry of it, named ``label`` in
    errors): its type, then the key's bounds; returns it (ints as floats for float keys)."""
    if expected is float:
        value = _as_float(value)
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise ConfigError(
            f"{label} must be {expected.__name__}, not {type(value).__name__} {echo(value)}"
        )
    if expected is str:
        if not value.strip():
            raise ConfigError(f"{label} must not be empty")
        if "\x00" in value:
            raise ConfigError(f"{label} must not contain a NUL character: {echo(value)}")
        return value
    if expected is float and not math.isfinite(value):
        raise ConfigError(f"{label} must be a finite number, not {echo(value)}")
    if path in POSITIVE and value <= 0:
        raise ConfigError(f"{label} must be positive, not {echo(value)}")
    if path in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{label} must not be negative, not {echo(value)}")
    if path in BELOW_ONE and value >= 1:
        raise ConfigError(f"{label} must be below 1, not {echo(value)}")
    if path in AT_MOST and value > AT_MOST[path]:
        raise ConfigError(f"{label} must be at most {AT_MOST[path]}, not {echo(value)}")
    return value


def check_key(key: str, value: Any, source: str = "--set") -> Any:
    """``value`` for dotted ``key`` checked on its own, as a config file's would be: an unknown
    key (with a suggestion), then the key's type, choices and bounds, but not its combination
    with other keys (:func:`validate` checks those for a whole config). Returns the value as a
    config holds it (ints of float keys as floats)."""
    cfg = defaults()
    set_key(cfg, key, value, source)
    path = next((m for m in MAPPINGS if key.startswith(f"{m}.")), key)
    reference, node = defaults(), cfg
    *parents, leaf = path.split(".")
    for part in parents:
        reference, node = reference[part], node[part]
    if path in MAPPINGS:
        checked = _check_mapping(node[leaf], path)
        return checked if path == key else checked[key[len(path) + 1 :]]
    return _check(node[leaf], reference[leaf], path)


def validate(cfg: dict, reference: dict | None = None, prefix: str = "") -> dict:
    """Check types, choices and ranges against the defaults; returns ``cfg`` (floats coerced)."""
    reference = defaults() if reference is None else reference
    for key, default in reference.items():
        path = f"{prefix}{key}"
        if path in MAPPINGS:
            cfg[key] = _check_mapping(cfg[key], path)
        elif isinstance(default, dict):
            validate(cfg[key], default, f"{path}.")
        else:
            cfg[key] = _check(cfg[key], default, path)
    if not prefix:
        _check_combinations(cfg)
    return cfg


def _check_combinations(cfg: dict) -> None:
    regime, loss = cfg["training"]["regime"], cfg["training"]["loss"]
    if regime == "negative_sampling" and loss not in ("logistic", "self_adversarial"):
        raise ConfigError(f"training.loss {loss} needs regime 1vsall or kvsall")
    if regime != "negative_sampling" and loss not in ("bce", "ce"):
        raise ConfigError(f"training.loss {loss} needs regime negative_sampling")
    model = cfg["model"]
    if not model["modalities"] and not model["structural"]:
        raise ConfigError("model.structural: false needs at least one of model.modalities")
    if len(set(model["modalities"])) != len(model["modalities"]):
        raise ConfigError(f"model.modalities lists a modality twice: {model['modalities']}")
    zero_shot = cfg["zero_shot"]
    prompts = {"zero_shot.default_template": zero_shot["default_template"]}
    for key in ("templates", "head_templates"):
        prompts.update(
            {f"zero_shot.{key}.{echo(r, quote=False)}": t for r, t in zero_shot[key].items()}
        )
    for key, template in prompts.items():
        if "{}" not in template:
            raise ConfigError(f"{key} needs a {{}} for the candidate's name: {echo(template)}")
    anchors = zero_shot["anchor_modalities"]
    if len(set(anchors)) != len(anchors):
        raise ConfigError(f"zero_shot.anchor_modalities lists a modality twice: {anchors}")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> dict:
    """Defaults, then the user's file, then ``key=value`` overrides; validated."""
    cfg = defaults()
    if path is not None:
        _merge(cfg, load_yaml(path), source=str(path))
    for text in overrides:
        key, value = parse_override(text)
        set_key(cfg, key, value)
    return validate(cfg)


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w@]*):(?P<rest>.*)$")


def _split_comment(rest: str) -> tuple[str, int | None]:
    """``(value, offset of the comment's #)`` of the text after ``key:``; quotes respected."""
    quote = None
    for i, char in enumerate(rest):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or rest[i - 1].isspace()):
            return rest[:i].strip(), i
    return rest.strip(), None


def inline(value: Any) -> str:
    """One value as inline YAML (``[x]`` dumped, brackets removed: no document end marker)."""
    return yaml.safe_dump([value], default_flow_style=True, width=1 << 20).strip()[1:-1]


def documented(cfg: dict, only: set[str] | None = None) -> str:
    """``cfg`` written over the documented defaults: every key with its comment (``only``:
    just these dotted keys, their sections and comments, each with its default)."""
    lines: list[str] = []
    stack: list[str] = []
    keep_comments = only is None  # continuation comments follow the key line they document
    for line in default_text().splitlines():
        match = _KEY_LINE.match(line)
        if match is None:
            if keep_comments and (line.strip() or only is None):
                lines.append(line)
            continue
        depth = len(match["indent"]) // 2
        stack[depth:] = [match["key"]]
        path = ".".join(stack)
        value_text, hash_at = _split_comment(match["rest"])
        if not value_text:  # a section header
            if only is None or any(k.startswith(f"{path}.") for k in only):
                lines.append(line)
            keep_comments = only is None
            continue
        keep_comments = only is None or path in only
        if not keep_comments:
            continue
        node: Any = cfg
        for part in stack:
            node = node[part]
        shown = value_text if yaml.safe_load(value_text) == node else inline(node)
        text = f"{match['indent']}{match['key']}: {shown}"
        if hash_at is not None:
            column = len(line) - len(match["rest"]) + hash_at
            comment = match["rest"][hash_at:]
            if only is not None:
                comment = f"# default {value_text};{comment[1:]}"
            text = f"{text:<{column}}" if len(text) < column else f"{text}  "
            text += comment
        lines.append(text)
    if only is not None and not only:
        return "# every key has its default value (`vlkge config show` lists them)\n"
    return "\n".join(lines) + "\n"


def diff(a: dict, b: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two configs."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.update(diff(va, vb, f"{prefix}{key}."))
        elif va != vb:
            out[f"{prefix}{key}"] = (va, vb)
    return out
