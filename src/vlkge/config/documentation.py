"""A config as YAML text: ``config.yaml`` of a run, and the documented form that ``vlkge
config show`` and the report print (every key with its comment from ``configs/default.yaml``,
a key's allowed values listed from their one table or registry)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from vlkge.config.choices import allowed
from vlkge.config.tree import default_text, get_key

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w@]*):(?P<rest>.*)$")


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


def inline(value: Any) -> str:
    """One value as inline YAML (``[x]`` dumped, brackets removed: no document end marker)."""
    return yaml.safe_dump([value], default_flow_style=True, width=1 << 20).strip()[1:-1]


def documented(cfg: dict, only: set[str] | None = None) -> str:
    """``cfg`` written over the documented defaults: every key with its comment (``only``:
    just these dotted keys, their sections and comments, each with its default). A key with
    a fixed set of values has them listed first in its comment, from their table or registry
    (:func:`vlkge.config.choices.allowed`)."""
    values = allowed()
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
        node = get_key(cfg, path)
        shown = value_text if yaml.safe_load(value_text) == node else inline(node)
        text = f"{match['indent']}{match['key']}: {shown}"
        if hash_at is not None:
            column = len(line) - len(match["rest"]) + hash_at
            comment = match["rest"][hash_at + 1 :].strip()
            if path in values:
                listed = " | ".join(inline(c) for c in values[path])
                comment = f"{listed}: {comment}" if comment else listed
            if only is not None:
                comment = f"default {value_text}; {comment}"
            text = f"{text:<{column}}" if len(text) < column else f"{text}  "
            text += f"# {comment}"
        lines.append(text)
    if only is not None and not only:
        return "# every key has its default value (`vlkge config show` lists them)\n"
    return "\n".join(lines) + "\n"


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
