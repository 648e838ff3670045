"""What one update of the feature cache did for one modality, as counts and as text."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

FAILURES_SHOWN = 5  # entities whose failed inputs :meth:`ModalityReport.describe` lists


@dataclass
class ModalityReport:
    """What one ``update``/``import_features`` did for one modality."""

    modality: str
    encoder: str
    width: int
    entities: int = 0  # requested entities that have this modality
    encoded: int = 0
    reused: int = 0
    removed: int = 0  # cached rows dropped because the entity lost this modality
    failures: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    without_feature: list[str] = field(default_factory=list)

    @property
    def failed_inputs(self) -> int:
        return sum(len(v) for v in self.failures.values())

    def summary(self) -> str:
        text = (
            f"{self.modality}: {_count(self.entities, 'entity')}, {self.encoded:,} encoded, "
            f"{self.reused:,} reused (width {self.width}, {self.encoder})"
        )
        if self.removed:
            text += f"; {_count(self.removed, 'stale row')} removed"
        if self.failures:
            noun = "image" if self.modality == "image" else "input"
            text += (
                f"; {_count(self.failed_inputs, noun)} missing or unreadable in "
                f"{_count(len(self.failures), 'entity')}"
            )
        if self.without_feature:
            text += (
                f"; {_count(len(self.without_feature), 'entity')} without a usable {self.modality}"
            )
        return text

    def describe(self, metadata_path: Path) -> str:
        """The summary, then the first failed input of the first few entities with failures
        (all of them are listed in the modality's ``metadata_path``)."""
        lines = [self.summary()]
        shown = list(self.failures.items())[:FAILURES_SHOWN]
        for entity, failures in shown:
            path, reason = failures[0]
            more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
            lines.append(f"  {entity}: {path}: {reason}{more}")
        if len(self.failures) > len(shown):
            rest = len(self.failures) - len(shown)
            lines.append(f"  ... {rest} more entities: see {metadata_path}")
        return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{n:,} {noun if n == 1 else plural}"
