"""The README's Python examples name what the package exports: each of their imports runs."""

from __future__ import annotations

import re

from tests.test_configs_shipped import ROOT

BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_the_readme_python_examples_import():
    blocks = BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    imports = [
        line for block in blocks for line in block.splitlines() if line.startswith("from vlkge")
    ]
    assert len(imports) >= 5
    for line in imports:
        exec(line, {})  # an ImportError names the line's missing name
