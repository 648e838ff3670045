"""A tiny randomly initialised CLIP with an offline tokenizer and image processor, shared by
the encoder tests and the serving tests (a run whose features it wrote can encode new
entities' texts and images, as a real one does)."""

from __future__ import annotations

from pathlib import Path

import torch

IMAGE_SIZE = 30
TOWER = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)


def clip_tokenizer():
    """A CLIP BPE tokenizer over single byte-level characters (no merges, no download)."""
    import transformers
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in sorted(ByteLevel.alphabet()):
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return transformers.CLIPTokenizer(vocab=vocab, merges=[])


def clip_image_processor():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )


def tiny_clip():
    import transformers

    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    config = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            max_position_embeddings=40,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            **TOWER,
        ),
        vision_config=dict(image_size=IMAGE_SIZE, patch_size=6, **TOWER),
        projection_dim=24,
    )
    return transformers.CLIPModel(config).eval(), tokenizer, clip_image_processor()


def save_checkpoint(folder: Path, model, tokenizer, image_processor, processor_cls) -> Path:
    model.save_pretrained(folder)
    processor_cls(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def tiny_clip_folder(folder: Path) -> Path:
    """The tiny CLIP saved as a checkpoint folder that ``build_encoder`` loads."""
    import transformers

    model, tokenizer, processor = tiny_clip()
    return save_checkpoint(folder, model, tokenizer, processor, transformers.CLIPProcessor)
