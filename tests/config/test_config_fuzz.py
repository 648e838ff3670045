"""A property test of the configuration: random values of random types for every key, set the
way ``--set`` sets them, end as a valid resolved config or as a ``ConfigError`` of one line,
never anything else; a sample of the valid ones builds the model, the training regime and the
evaluator on the toy dataset and evaluates it, raising nothing but a ``VlkgeError``.

Deterministic (derandomized) and bounded: a few dozen inputs per key, a few seconds in all.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vlkge import config as cfgmod
from vlkge.errors import ConfigError, VlkgeError

DEFAULTS = cfgmod.defaults()
KEYS = cfgmod.dotted_keys(DEFAULTS)
CHOICES = cfgmod.allowed()

# training flushes subnormal floats process-wide (torch.set_flush_denormal), which hypothesis
# cannot generate under, so none are drawn
floats = functools.partial(st.floats, allow_subnormal=False)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, -1, 2**31, 2**63, -(2**63) - 1, 10**30, 10**400]),
    floats(allow_subnormal=False),  # nan, infinities, huge (training flushes subnormals)
    st.text(max_size=12),
    st.sampled_from(["", " ", "{}", "x {}", "\x00", "1e400", "-.inf", "x" * 300, "train", "auto"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers(-3, 3), inner, max_size=3)
    ),
    max_leaves=6,
)
RELATIONS = st.sampled_from(["likes", "knows", "parent", "zz"])  # the toy's, and one it lacks


def default_of(key: str):
    node = DEFAULTS
    for part in key.split("."):
        node = node[part]
    return node


def own_kind(key: str) -> st.SearchStrategy:
    """Values of the key's own kind, valid or near its limits (so that many draws are valid)."""
    default = default_of(key)
    kind = cfgmod.NULLABLE_TYPES.get(key) if default is None else type(default)
    own: list[st.SearchStrategy] = [st.just(default)]
    if key in CHOICES:
        own.append(st.sampled_from(CHOICES[key]))
    elif key in cfgmod.SUBSETS:
        own.append(st.lists(st.sampled_from([*cfgmod.SUBSETS[key], "other"]), max_size=3))
    elif key in cfgmod.ITEMS:
        item = RELATIONS if cfgmod.ITEMS[key] is str else floats(-1, 1.1e3)
        own.append(st.lists(item | SCALARS, max_size=3))
    elif key in cfgmod.MAPPINGS:
        entry = floats(-0.5, 1.5) if cfgmod.MAPPINGS[key] is float else st.just("a {} b")
        own.append(st.dictionaries(RELATIONS, entry | RELATIONS | SCALARS, max_size=2))
    elif kind in (int, float) and key in cfgmod.AT_MOST:
        bound = cfgmod.AT_MOST[key]
        own.append(st.integers(-2, int(bound) + 2) | floats(-1.0, bound * 1.5))
    elif kind is float:  # below one
        own.append(floats(-0.5, 1.5))
    elif kind is bool:
        own.append(st.booleans())
    return st.one_of(own)


def override(key: str, value) -> str:
    """``key=value`` as typed on the command line (the value as inline YAML)."""
    return f"{key}={cfgmod.inline(value)}"


def overrides(key: str, values: st.SearchStrategy | None = None) -> st.SearchStrategy:
    """A ``--set`` text for ``key``: a value (of any type, or of the key's kind) as YAML, raw
    text, or one entry of a mapping; only ``values`` when given."""
    if values is not None:
        return values.map(lambda v: override(key, v))
    options = [
        (VALUES | own_kind(key)).map(lambda v: override(key, v)),
        st.text(max_size=16).map(lambda raw: f"{key}={raw}"),
    ]
    if key in cfgmod.MAPPINGS:
        options.append(st.builds(lambda r, v: override(f"{key}.{r}", v), RELATIONS, VALUES))
    return st.one_of(options)


def resolve(texts: list[str]) -> dict | None:
    """The resolved config, or ``None`` after checking the ConfigError is one short line."""
    try:
        cfg = cfgmod.load_config(overrides=texts)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 800, message
        return None
    # a valid config is stable and survives a run's config.yaml
    assert cfgmod.validate(yaml.safe_load(cfgmod.dump(cfg))) == cfg
    return cfg


@pytest.mark.parametrize("key", KEYS)
@settings(
    max_examples=12,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_key_takes_any_value_or_says_why_in_one_line(key, data):
    resolve([data.draw(overrides(key))])


# the keys whose values shape a model, its training regime or its evaluation
BUILT = [
    k
    for k in KEYS
    if k.split(".")[0] in ("model", "training", "evaluation", "dataset", "zero_shot")
    and k not in ("dataset.name", "dataset.data_dir")
    or k in ("device", "precision", "compat.paper")
]


def build(cfg: dict) -> None:
    """What a run builds from ``cfg`` before its first batch, then one evaluation."""
    from vlkge.data.datasets import load_graph
    from vlkge.evaluation.evaluator import Evaluator
    from vlkge.evaluation.prompts import relation_templates
    from vlkge.models.factory import build_model
    from vlkge.training.build import build_regime
    from vlkge.training.final import evaluate_run
    from vlkge.training.setup import check_splits, resolve_device

    resolve_device(cfg["device"])
    kg = load_graph(cfg["dataset"])
    check_splits(cfg, kg)
    generator = torch.Generator().manual_seed(0)
    features = {
        m: (
            torch.randn(kg.num_entities, 6, generator=generator),
            torch.ones(kg.num_entities, dtype=torch.bool),
        )
        for m in cfg["model"]["modalities"]
    }
    model = build_model(cfg["model"], kg, features, cfg["model"]["reference_fusion"])
    build_regime(cfg, kg)
    zero_shot = cfg["zero_shot"]
    for key in ("templates", "head_templates"):
        relation_templates(kg, zero_shot[key], zero_shot["default_template"], f"zero_shot.{key}")
    evaluator = Evaluator(kg, cfg["evaluation"], precision=cfg["precision"])
    metrics = evaluate_run(cfg, kg, model, cfg["evaluation"]["splits"], evaluator=evaluator)
    for split in cfg["evaluation"]["splits"]:  # none scored (only_unseen on this graph): nan
        both = metrics[split]["both"]
        assert 0 <= both["mrr"] <= 1 or (both["count"] == 0 and math.isnan(both["mrr"]))


@settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_valid_configs_build_and_evaluate_on_the_toy_dataset(toy_dir, data):
    keys = data.draw(st.lists(st.sampled_from(BUILT), min_size=2, max_size=5, unique=True))
    texts = [data.draw(overrides(key, own_kind(key))) for key in keys]
    base = [f"dataset.name={toy_dir}", "model.dim=8", "training.negatives.num=2"]
    cfg = resolve([*base, *texts])
    assume(cfg is not None)
    try:
        build(cfg)
    except VlkgeError as exc:
        assert "\n" not in str(exc)
