"""A config as YAML: config.yaml round trips, the documented form of `vlkge config show`
(vlkge.config.documentation)."""

from __future__ import annotations

import yaml

from vlkge import config as cfgmod


def test_every_default_key_is_documented():
    """Each leaf key in default.yaml carries a comment on its line (or the lines after it)."""
    lines = cfgmod.default_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.endswith(":"):
            continue
        assert "#" in line, f"undocumented default: {line!r} (line {i + 1})"


def test_dump_round_trips():
    cfg = cfgmod.load_config(overrides=["model.dim=16"])
    assert cfgmod.validate(yaml.safe_load(cfgmod.dump(cfg))) == cfg


def test_documented_defaults_are_the_default_file_with_allowed_values_listed():
    """Every line of default.yaml, where a key with a fixed set of values has them listed
    first in its comment: from the base table and from the registries."""
    shown = cfgmod.documented(cfgmod.defaults()).splitlines()
    text = cfgmod.default_text().splitlines()
    assert len(shown) == len(text)
    listed = []
    for line, original in zip(shown, text, strict=True):
        if line != original:
            head, _, comment = original.partition("# ")
            assert line.startswith(f"{head}# ") and line.endswith(f": {comment}")
            listed.append(line[len(head) + 2 : len(line) - len(comment) - 2])
    allowed = cfgmod.allowed()
    assert set(allowed) > set(cfgmod.CHOICES)  # the registries' keys too
    assert sorted(listed) == sorted(" | ".join(map(cfgmod.inline, v)) for v in allowed.values())
    lines = "\n".join(shown)
    assert "  backbone: transe        # transe | distmult | complex | rotate: the scoring" in lines
    assert "  ties: realistic         # realistic | optimistic | pessimistic | ordinal: " in lines


def test_documented_config_round_trips_with_every_comment():
    cfg = cfgmod.load_config(
        overrides=[
            "model.dim=32",
            "evaluation.splits=[test]",
            "zero_shot.templates.painter=by {}, it is",
            "report.zero_shot=runs/zero shot",
        ]
    )
    full = cfgmod.documented(cfg)
    assert yaml.safe_load(full) == cfg
    assert "  dim: 32                 # width d of the" in full
    assert len(full.splitlines()) == len(cfgmod.default_text().splitlines())


def test_documented_changed_keys_only():
    cfg = cfgmod.load_config(overrides=["model.dim=32", "zero_shot.templates.r=x {}", "seed=1"])
    assert cfgmod.changed_keys(cfg) == {"model.dim", "zero_shot.templates", "seed"}
    short = cfgmod.documented(cfg, cfgmod.changed_keys(cfg))
    assert yaml.safe_load(short) == {
        "seed": 1,
        "model": {"dim": 32},
        "zero_shot": {"templates": {"r": "x {}"}},
    }
    assert "# default 768; width d" in short
    assert "every key has its default" in cfgmod.documented(cfgmod.load_config(), set())
