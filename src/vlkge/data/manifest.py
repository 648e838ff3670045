"""The entity manifest: which texts and images each entity has.

This is the input of the multimodal layer. An entity may have any number of texts and
images, including none; availability flags are derived from it, never assumed.

On disk a manifest is a tab-separated file ``entity<TAB>kind<TAB>value`` with ``kind`` one of
``text`` or ``image`` (an image path, relative to the manifest's folder unless absolute).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vlkge.data.triples import numbered_lines
from vlkge.errors import ConfigError, DataError, echo
from vlkge.terms import MODALITIES


@dataclass
class EntityManifest:
    """Texts and image paths per entity label."""

    texts: dict[str, list[str]] = field(default_factory=dict)
    images: dict[str, list[str]] = field(default_factory=dict)

    def add_text(self, entity: str, text: str) -> None:
        self.texts.setdefault(entity, []).append(text)

    def add_image(self, entity: str, path: str) -> None:
        self.images.setdefault(entity, []).append(path)

    def entities(self) -> list[str]:
        """Every entity with at least one modality, in first-seen order."""
        return list(dict.fromkeys([*self.texts, *self.images]))

    def with_text_template(self, template: str, names: dict[str, str]) -> EntityManifest:
        """The manifest with each text rewritten as ``template`` says: ``{text}`` is the text,
        ``{name}`` the entity's name (``names``, else its id); images are unchanged."""
        if template == "{text}":
            return self
        try:
            template.format(text="", name="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"encoder.text_template {echo(template)} may use only {{text}} and {{name}} ({echo(exc, quote=False)})"
            ) from None
        texts = {
            entity: [template.format(text=text, name=names.get(entity, entity)) for text in items]
            for entity, items in self.texts.items()
        }
        return EntityManifest(texts, self.images)

    def availability(self, entities: Iterable[str]) -> dict[str, torch.Tensor]:
        """Boolean flags per modality, aligned with ``entities`` (a graph's id order)."""
        labels = list(entities)
        return {
            "text": torch.tensor([bool(self.texts.get(e)) for e in labels], dtype=torch.bool),
            "image": torch.tensor([bool(self.images.get(e)) for e in labels], dtype=torch.bool),
        }

    def coverage(self, entities: Iterable[str]) -> dict[str, int]:
        """How many of ``entities`` have image only, text only, both, neither."""
        flags = self.availability(entities)
        text, image = flags["text"], flags["image"]
        return {
            "both": int((text & image).sum()),
            "text_only": int((text & ~image).sum()),
            "image_only": int((image & ~text).sum()),
            "neither": int((~text & ~image).sum()),
        }

    @classmethod
    def read(cls, path: str | Path) -> EntityManifest:
        """Read the ``entity<TAB>kind<TAB>value`` format described in the module docstring."""
        path = Path(path)
        manifest = cls()
        for number, line in numbered_lines(path):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise DataError(
                    path, number, f"expected 3 tab-separated columns, found {len(fields)}"
                )
            entity, kind, value = (f.strip() for f in fields)
            if not entity:
                raise DataError(path, number, "blank entity id")
            if kind not in MODALITIES:
                raise DataError(path, number, f"kind must be text or image, not {echo(kind)}")
            if not value:
                raise DataError(path, number, f"empty {kind}")
            if kind == "text":
                manifest.add_text(entity, value)
            else:
                image = Path(value)
                manifest.add_image(
                    entity, str(image if image.is_absolute() else path.parent / image)
                )
        return manifest

    def write(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            for entity, texts in self.texts.items():
                for text in texts:
                    handle.write(f"{entity}\ttext\t{_one_line(text)}\n")
            for entity, images in self.images.items():
                for image in images:
                    handle.write(f"{entity}\timage\t{image}\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def read_keyed_texts(path: str | Path) -> dict[str, str]:
    """Read ``entity<TAB>text`` files (WordNet glosses, names); the first tab splits."""
    out: dict[str, str] = {}
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        key, sep, text = line.partition("\t")
        if not sep or not key.strip():
            raise DataError(path, number, "expected entity<TAB>text")
        if text.strip():
            out[key.strip()] = text.strip()
    return out
