"""The tables of rules (vlkge.config.schema): every numeric key has an upper bound, every
table names keys that exist."""

from __future__ import annotations

from vlkge import config as cfgmod


def _numeric_keys() -> list[str]:
    cfg = cfgmod.defaults()
    out = []
    for key in cfgmod.dotted_keys(cfg):
        node = cfg
        for part in key.split("."):
            node = node[part]
        kind = cfgmod.NULLABLE_TYPES.get(key) if node is None else type(node)
        if kind in (int, float) or cfgmod.ITEMS.get(key) in (int, float):
            out.append(key)
    return out


def test_every_numeric_key_has_an_upper_bound():
    numeric = _numeric_keys()
    assert {"model.dim", "num_threads", "evaluation.calibration.weights"} <= set(numeric)
    assert [k for k in numeric if k not in cfgmod.AT_MOST and k not in cfgmod.BELOW_ONE] == []
    assert set(cfgmod.AT_MOST) <= set(numeric)  # no bound for a key that is gone
    for key, bound in cfgmod.AT_MOST.items():  # the bound itself is allowed
        value = f"[{bound}]" if key in cfgmod.ITEMS else bound
        cfgmod.load_config(overrides=[f"{key}={value}"])


def test_every_table_names_keys_that_exist():
    keys = set(cfgmod.dotted_keys(cfgmod.defaults()))
    tables = [
        cfgmod.CHOICES,
        cfgmod.POSITIVE,
        cfgmod.NON_NEGATIVE,
        cfgmod.BELOW_ONE,
        cfgmod.AT_MOST,
        cfgmod.NULLABLE_TYPES,
        cfgmod.SUBSETS,
        cfgmod.EMPTY_SUBSETS_OK,
        cfgmod.ITEMS,
        cfgmod.MAPPINGS,
        cfgmod.UNIT_INTERVAL,
        cfgmod.allowed(),
    ]
    assert [k for table in tables for k in table if k not in keys] == []
