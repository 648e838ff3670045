"""Commands that query a trained run: ``predict`` (known or brand-new entities),
``neighbours`` and ``export`` (the work lives in predict.py and export.py).
"""

from __future__ import annotations

import argparse
import json

from vlkge.errors import VlkgeError


def cmd_predict(args: argparse.Namespace) -> int:
    from vlkge.predict import top_k
    from vlkge.training.setup import load_run

    if args.new_text is not None or args.new_image is not None:
        return _predict_new(args)
    if args.direction is not None:
        raise VlkgeError("--direction goes with --new-text / --new-image")
    if (args.head is None) == (args.tail is None):
        raise VlkgeError(
            "predict needs exactly one of --head ENTITY (predict tails) or --tail ENTITY, "
            "or a new entity's --new-text / --new-image"
        )
    if args.new_name is not None:
        raise VlkgeError("--new-name goes with --new-text / --new-image")
    cfg, kg, model = load_run(args.run)
    score_fn, stages = _scorer(args, cfg, kg, model)
    side, anchor = ("tail", args.head) if args.head is not None else ("head", args.tail)
    answers = top_k(score_fn, kg, side, anchor, args.relation, args.top_k, args.exclude_known)
    if args.json:
        print(json.dumps(answers, indent=2))
        return 0
    query = (
        f"({anchor}, {args.relation}, ?)" if side == "tail" else f"(?, {args.relation}, {anchor})"
    )
    _say_stages(stages)
    print(f"top {len(answers)} for {query}   * = known triple")
    for a in answers:
        mark = "*" if a["known"] else " "
        print(f"{a['rank']:>4} {mark} {a['score']:>10.4f}  {a['entity']}  {a['name'][:60]}")
    return 0


def _predict_new(args: argparse.Namespace) -> int:
    from vlkge.predict import RunEncoders, new_anchor, predict_new_entity
    from vlkge.training.setup import load_run

    if args.head is not None or args.tail is not None:
        raise VlkgeError("--new-text / --new-image replace --head / --tail (use --direction)")
    cfg, kg, model = load_run(args.run)
    encoders = RunEncoders()  # the new entity's and the zero-shot baseline's: loaded once
    new = new_anchor(
        cfg, kg, args.new_text, args.new_image, args.new_name, model=model, build=encoders
    )
    score_fn, stages = _scorer(args, cfg, kg, model, encoders)
    direction = args.direction or "tail"
    answers = predict_new_entity(score_fn, kg, new, args.relation, direction, args.top_k)
    if args.json:
        print(json.dumps(answers, indent=2))
        return 0
    query = f"(new, {args.relation}, ?)" if direction == "tail" else f"(?, {args.relation}, new)"
    _say_stages(stages, new.left_out)
    print(f"top {len(answers)} for {query}")
    for a in answers:
        print(f"{a['rank']:>4}   {a['score']:>10.4f}  {a['entity']}  {a['name'][:60]}")
    return 0


def _scorer(args: argparse.Namespace, cfg: dict, kg, model, encoders=None) -> tuple:
    """The run's final scorer as its metrics.json records it and the stages it blends in, or
    with ``--model-only`` the model's alone; ``encoders`` as for ``recorded_scorer``."""
    from vlkge.evaluation.evaluator import model_scorer
    from vlkge.training.final import recorded_scorer

    if args.model_only:
        return model_scorer(model, cfg["precision"]), []
    return recorded_scorer(args.run, cfg, kg, model, encoders=encoders)


def _say_stages(stages: list[str], left_out: dict[str, str] | None = None) -> None:
    """The line naming what the scorer blended in beside the model, and one per stage it
    left out for a new entity."""
    left_out = left_out or {}
    if used := [stage for stage in stages if stage not in left_out]:
        print(f"scored as evaluated: the model + {' + '.join(used)} (--model-only: without)")
    for stage, why in left_out.items():
        print(f"left out for a new entity: {stage} ({why})")


def cmd_neighbours(args: argparse.Namespace) -> int:
    from vlkge.export import nearest_entities
    from vlkge.training.setup import load_run

    _, kg, model = load_run(args.run)
    found = nearest_entities(model, kg, args.entity, args.top_k)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"nearest to {args.entity} ({kg.display_name(kg.entity_id(args.entity))[:60]}), cosine")
    for n in found:
        print(f"{n['rank']:>4} {n['similarity']:>8.4f}  {n['entity']}  {n['name'][:60]}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vlkge.export import export_embeddings
    from vlkge.training.setup import load_run

    cfg, kg, model = load_run(args.run, args.checkpoint)
    for path in export_embeddings(cfg, kg, model, args.out):
        print(path)
    return 0
