"""Fine-tuning the end of an encoder tower inside KGE training (SPEC 2.1: frozen or tuned).

``encoder.finetune`` picks what is trained; everything before it stays frozen:

- ``head``: the tower's projection head (CLIP ``text_projection`` / ``visual_projection``,
  BLIP ``text_proj`` / ``vision_proj``, SigLIP's ``head``). Its input is computed once per
  entity input, so a training step costs one small matrix product per modality.
- ``layers``: the head plus the last ``encoder.finetune_layers`` transformer blocks. The
  hidden states entering the first trained block are computed once; each step re-runs only
  the trained blocks and what follows them (final norm, pooling, projection) with the tower's
  own forward code, the frozen blocks being skipped. A step then costs a forward and backward
  of those blocks over every entity input: use a GPU, few blocks, or ``head`` on large graphs.

The encoder stays in eval mode (no dropout), so a tower is a deterministic function of its
weights. Only the trained modules are registered as submodules: checkpoints hold just their
weights, and the frozen encoder is rebuilt from ``encoder.name`` when a run is loaded.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from vlkge.encoders.base import Encoder
from vlkge.encoders.images import image_batches
from vlkge.errors import ConfigError, VlkgeError

FINETUNE_MODES = ("none", "head", "layers")

#: projection heads by tower, as the transformers dual encoders name them
HEADS = {
    "text": ("text_projection", "text_proj", "text_model.head"),
    "image": ("visual_projection", "vision_proj", "vision_model.head"),
}
#: words in the module path of each tower of a dual encoder
TOWER_WORDS = {"text": ("text",), "image": ("vision", "visual")}


def find_head(model: nn.Module, modality: str) -> nn.Module | None:
    for name in HEADS[modality]:
        with contextlib.suppress(AttributeError):
            return model.get_submodule(name)
    return None


def find_blocks(model: nn.Module, modality: str, single_tower: bool) -> nn.ModuleList:
    """The longest ``ModuleList`` of the tower (its transformer blocks)."""
    found = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList)
        and len(module)
        and (single_tower or any(word in name for word in TOWER_WORDS[modality]))
    ]
    if not found:
        raise ConfigError(f"encoder.finetune: layers found no {modality} transformer blocks")
    return max(found, key=len)


@contextlib.contextmanager
def only_last(blocks: nn.ModuleList, count: int) -> Iterator[None]:
    """Let a forward pass run only the last ``count`` blocks (the others are skipped)."""
    saved = blocks._modules
    kept = list(saved.values())[-count:]
    blocks._modules = OrderedDict((str(i), module) for i, module in enumerate(kept))
    try:
        yield
    finally:
        blocks._modules = saved


class _Tap:
    """A forward pre-hook on one module: records its first input, or replaces it."""

    def __init__(self, module: nn.Module):
        self.record: list[torch.Tensor] | None = None
        self.inject: torch.Tensor | None = None
        self.handle = module.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        key = None if args else "hidden_states"
        value = args[0] if key is None else kwargs[key]
        if self.record is not None:
            self.record.append(value.detach())
        if self.inject is None:
            return None
        if key is None:
            return (self.inject, *args[1:]), kwargs
        return args, {**kwargs, key: self.inject}


class TunedTower(nn.Module):
    """One modality's features for every entity, trainable at the tower's end.

    ``inputs``: the entity inputs (texts, or image paths), ``owner[i]`` the entity id of input
    ``i``; an entity's feature is the mean over its inputs (images that fail to load are
    skipped; an entity left without inputs has no feature: ``mask`` False).
    """

    def __init__(
        self,
        encoder: Encoder,
        modality: str,
        inputs: Sequence[str],
        owner: Sequence[int],
        num_entities: int,
        mode: str = "head",
        layers: int = 1,
        workers: int = 0,
    ):
        super().__init__()
        if mode not in FINETUNE_MODES[1:]:
            raise ConfigError(f"encoder.finetune must be one of {', '.join(FINETUNE_MODES)}")
        if not hasattr(encoder, "forward_tokens"):
            raise ConfigError(
                f"encoder.finetune: encoder {encoder.name} cannot be fine-tuned (transformers "
                "and sentence-transformers encoders can)"
            )
        model = encoder.module()
        self.modality, self.mode, self.num_entities = modality, mode, num_entities
        head = find_head(model, modality)
        trained: list[nn.Module] = []
        if mode == "head":
            if head is None:
                raise ConfigError(
                    f"encoder.finetune: head, but encoder {encoder.name} has no {modality} "
                    "projection head; use encoder.finetune: layers"
                )
            tap_on = head
        else:
            if layers < 1:
                raise ConfigError("encoder.finetune_layers must be at least 1")
            blocks = find_blocks(model, modality, single_tower=len(encoder.modalities) == 1)
            if layers > len(blocks):
                raise ConfigError(
                    f"encoder.finetune_layers is {layers}, the {modality} tower has "
                    f"{len(blocks)} blocks"
                )
            object.__setattr__(self, "blocks", blocks)  # not a submodule: most are frozen
            self.count = layers
            trained.extend(list(blocks)[-layers:])
            tap_on = blocks[len(blocks) - layers]
        if head is not None:
            trained.append(head)
        self.trained = nn.ModuleList(trained)
        self.trained.requires_grad_(True)
        # the encoder and references into it are not submodules: only ``trained`` is saved
        object.__setattr__(self, "head", head)
        object.__setattr__(self, "encoder", encoder)
        self.tap = _Tap(tap_on)

        self.cached: list[torch.Tensor] = []  # inputs of the first trained module, per chunk
        self.chunks: list = []  # per chunk: tokens (text) or the pixel batch shape (image)
        used = self._capture(list(inputs), workers)
        owner_t = torch.as_tensor(list(owner), dtype=torch.long)[used]
        self.register_buffer("owner", owner_t, persistent=False)
        counts = torch.zeros(num_entities).index_add_(0, owner_t, torch.ones(len(owner_t)))
        self.register_buffer("counts", counts, persistent=False)
        self.register_buffer("mask", counts > 0, persistent=False)

    # --- the one frozen pass ------------------------------------------------------------------
    def _capture(self, inputs: list[str], workers: int) -> torch.Tensor:
        """Run the frozen encoder once, keeping the inputs of the first trained module.
        Returns the indices of the inputs that could be used."""
        encoder, size = self.encoder, self.encoder.batch_size
        self.tap.record = self.cached
        used: list[int] = []
        try:
            with torch.no_grad():
                if self.modality == "text":
                    for start in range(0, len(inputs), size):
                        tokens = encoder.tokenize(inputs[start : start + size])
                        encoder.forward_tokens(tokens)
                        self.chunks.append(tokens)
                        used.extend(range(start, min(start + size, len(inputs))))
                else:
                    loader = image_batches(inputs, encoder.image_transform(), size, workers)
                    for items, pixels, _failed in loader:
                        if pixels is None:
                            continue
                        encoder.forward_pixels(pixels)
                        self.chunks.append(tuple(pixels.shape))
                        used.extend(items)
        finally:
            self.tap.record = None
        if not used:
            raise VlkgeError(f"encoder.finetune: no {self.modality} input could be encoded")
        return torch.as_tensor(used, dtype=torch.long)

    # --- per training step --------------------------------------------------------------------
    def _chunk(self, index: int) -> torch.Tensor:
        cached = self.cached[index]
        if self.mode == "head":
            return self.head(cached)
        self.tap.inject = cached
        try:
            with only_last(self.blocks, self.count):
                if self.modality == "text":
                    return self.encoder.forward_tokens(self.chunks[index])
                pixels = torch.zeros(self.chunks[index], device=cached.device, dtype=cached.dtype)
                return self.encoder.forward_pixels(pixels)
        finally:
            self.tap.inject = None

    def forward(self) -> torch.Tensor:
        """``[num_entities, width]``: every entity's feature (zero rows without inputs)."""
        features = torch.cat([self._chunk(i) for i in range(len(self.cached))]).float()
        table = features.new_zeros(self.num_entities, features.shape[1])
        table = table.index_add(0, self.owner, features)
        return table / self.counts.clamp_min(1).unsqueeze(1)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.encoder.module()._apply(fn)
        self.cached = [fn(c) for c in self.cached]
        return self

    def extra_repr(self) -> str:
        what = "head" if self.mode == "head" else f"last {self.count} blocks + head"
        return f"{self.modality}, {what}, inputs={len(self.owner)}"


def build_towers(
    encoder: Encoder,
    manifest,
    entities: Sequence[str],
    modalities: Sequence[str],
    mode: str,
    layers: int = 1,
    workers: int = 0,
) -> dict[str, TunedTower]:
    """A tuned tower per modality over the manifest's texts or images of ``entities``."""
    towers = {}
    for modality in modalities:
        if not encoder.has(modality):
            raise ConfigError(f"encoder.finetune: encoder {encoder.name} has no {modality} tower")
        source = manifest.texts if modality == "text" else manifest.images
        inputs, owner = [], []
        for entity_id, label in enumerate(entities):
            for value in source.get(label, ()):
                inputs.append(value)
                owner.append(entity_id)
        towers[modality] = TunedTower(
            encoder, modality, inputs, owner, len(entities), mode, layers, workers
        )
    return towers
