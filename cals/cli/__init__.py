"""`cals`: thin command-line wrappers over the library. Errors print as one line."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from cals.errors import CalsError

REGISTRY_HELP = "model registry folder (default: $CALS_REGISTRY)"


def _emit(doc: Any, out: str | None = None) -> None:
    text = json.dumps(doc, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    else:
        print(text)


def _registry(args):
    from cals.registry import Registry

    from cals.settings import ModelEnv

    root = args.registry or ModelEnv.load().REGISTRY
    if not root:
        raise CalsError("no registry given: pass --registry DIR or set CALS_REGISTRY")
    return Registry(root)


def _schema(args):
    from cals.schema import load_schema

    return load_schema(args.schema)


def cmd_generate(args) -> None:
    from cals.synth import generate_dataset, parse_mix

    mix = parse_mix(args.mix) if args.mix else None
    w, h = _size(args.size)
    path = generate_dataset(args.out, args.images, seed=args.seed, mix=mix, schema=_schema(args),
                            image_size=(w, h), max_people=args.max_people, workers=args.workers)
    print(path)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CalsError(f"--size must look like 320x240, got {text!r}") from None
    return w, h


def cmd_import_coco(args) -> None:
    from cals.data.coco_import import import_coco

    print(import_coco(args.annotations, args.images, args.out, _schema(args), link=not args.copy))


def cmd_train(args) -> None:
    """Alone or as one rank under torchrun: rank 0 registers, promotes and prints; every rank trains."""
    from cals import distributed
    from cals.model.train import train

    registry = _registry(args)
    out = sys.stdout  # training sends stdout to stderr (mmengine prints); progress lines go here
    report = (lambda state: print(json.dumps({"progress": state}), file=out, flush=True)) \
        if args.progress_jsonl else None
    try:
        version = train(args.data, registry, config=args.config, schema=_schema(args),
                        epochs=args.epochs, iters=args.iters, init=args.init, val_root=args.val,
                        batch_size=args.batch_size, work_dir=args.work_dir, progress=not args.progress_jsonl,
                        on_progress=report, rank_report=args.rank_report, pool_root=args.pool_data,
                        human_share=args.human_share, int8_test_root=args.int8_test)
        if distributed.is_main():
            if args.promote or registry.current() is None:
                registry.promote(version.id, reason="cals train --promote" if args.promote else "first model")
            print(json.dumps({"version": version.id}) if args.progress_jsonl else version.id, flush=True)
    finally:
        distributed.shutdown()


def cmd_evaluate(args) -> None:
    from cals.model.evaluation import evaluate_predictor
    from cals.model.predict import Predictor

    registry = _registry(args)
    predictor = Predictor.from_registry(registry, args.version)
    metrics = evaluate_predictor(predictor, args.data)
    if args.save:
        registry.update_meta(predictor.version_id, metrics=metrics)
    _emit(metrics, args.out)


def cmd_predict(args) -> None:
    from cals.model.images import predict_folder
    from cals.model.predict import Predictor

    predictor = Predictor.from_registry(_registry(args), args.version)
    detector = None
    from cals.settings import ModelEnv

    if not args.boxes and (args.detector or ModelEnv.load().DETECTOR):
        from cals.model.detector import PersonDetector

        detector = PersonDetector(args.detector)
    results = predict_folder(predictor, args.images, boxes=args.boxes, detector=detector)
    _emit(results, args.out)
    logging.getLogger("cals").info("wrote %d people to %s", len(results), args.out)


def cmd_models(args) -> None:
    registry = _registry(args)
    if args.action == "list":
        current = registry.current()
        for v in registry.list():
            mark = "*" if current and v.id == current.id else " "
            spine = v.meta.get("metrics", {}).get("groups", {}).get("spine", {}).get("AP")
            ap = f"spine AP {spine:.3f}" if isinstance(spine, (int, float)) else "not evaluated"
            print(f"{mark} {v.id}  parent={v.parent or '-'}  {v.meta.get('config', '?')}  {ap}")
        return
    if args.action == "promote":
        if not args.version:
            raise CalsError("models promote needs a version id")
        version = registry.promote(args.version, reason="cals models promote")
    else:
        version = registry.rollback()
    print(version.id)


def cmd_schema(args) -> None:
    schema = _schema(args)
    if args.cvat_spec:
        _emit([schema.cvat_label()])
    elif args.coco:
        _emit(schema.coco_category())
    else:
        _emit({"source": schema.source, "label": schema.label, "keypoints": schema.names,
               "groups": {g: [schema.names[i] for i in idx] for g, idx in schema.groups.items()}})


def cmd_simulate(args) -> None:
    from cals.simulate import SimulationConfig, run_simulation
    from cals.simulate.picks import format_picks_table
    from cals.simulate.summary import format_table

    cfg = SimulationConfig(
        out=args.out, pool=args.pool, test=args.test, pool_images=args.pool_images,
        test_images=args.test_images, pool_mix=args.pool_mix, test_mix=args.test_mix,
        initial=args.initial, batch=args.batch, rounds=args.rounds,
        strategies=split_specs(args.strategies),
        seeds=[int(s) for s in args.seeds.split(",") if s], survey=split_specs(args.survey),
        model=args.config,
        base_iters=args.base_iters, round_iters=args.round_iters, batch_size=args.batch_size,
        val_fraction=args.val_fraction, margin=args.margin, metric=args.metric, confidence=args.confidence,
        train_from=args.train_from, pseudo_threshold=args.pseudo_threshold, human_share=args.human_share)
    doc = run_simulation(cfg, schema=_schema(args))
    print(format_table(doc["summary"]))
    print("what each strategy picked (rounds after the initial one, all seeds):")
    print(format_picks_table(doc["picks"]))
    print(f"results: {args.out}/results.json, results.csv, label_efficiency.png, picks.md")


def split_specs(text: str) -> list[str]:
    """Comma-separated strategy specs; an `opt=value` item belongs to the spec before it, so
    "random,tcm:switch=80,random_share=0.25" is two specs."""
    specs: list[str] = []
    for item in (i.strip() for i in text.split(",")):
        if item and "=" in item and ":" not in item and specs:
            specs[-1] += f",{item}"
        elif item:
            specs.append(item)
    return specs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cals", description="Active learning of new keypoints for CVAT.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("--schema", help="keypoint schema YAML (default: $CALS_SCHEMA or the bundled COCO-17 + spine)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="write a synthetic COCO keypoints dataset")
    g.add_argument("--out", required=True, help="output folder (annotations.json + images/)")
    g.add_argument("--images", type=int, required=True, help="number of images")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--mix", help="pose-family mix, e.g. upright=0.7,bending=0.1,sitting=0.1,lying=0.05,twisting=0.05")
    g.add_argument("--size", default="320x240", help="image size WxH (default 320x240)")
    g.add_argument("--max-people", type=int, default=3)
    g.add_argument("--workers", type=int, help="processes (default: all cores)")
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser("import-coco", help="a COCO keypoints dataset (e.g. COCO-17 people) in the schema's layout: "
                                           "points matched by name, the rest unlabelled")
    i.add_argument("--annotations", required=True, help="COCO keypoints JSON (e.g. person_keypoints_train2017.json)")
    i.add_argument("--images", required=True, help="the folder its file_name entries are relative to")
    i.add_argument("--out", required=True, help="output dataset folder (annotations.json + images/)")
    i.add_argument("--copy", action="store_true", help="copy the images instead of symlinking them")
    i.set_defaults(func=cmd_import_coco)

    t = sub.add_parser("train", help="train or fine-tune a model; prints the new version id")
    t.add_argument("--data", required=True, help="COCO dataset folder (annotations.json + images/)")
    t.add_argument("--registry", help=REGISTRY_HELP)
    t.add_argument("--config",
                   help="cpu | rtmpose-m | path to an mmengine config (default: an --init version's own; "
                        "else $CALS_CONFIG or cpu). With an --init version it must be that version's config")
    sched = t.add_mutually_exclusive_group()
    sched.add_argument("--epochs", type=int, help="train for E epochs instead of the config's schedule")
    sched.add_argument("--iters", type=int, help="train for N iterations instead of the config's schedule")
    t.add_argument("--batch-size", type=int, help="images per training step (default: the config's)")
    t.add_argument("--init", help="registry version id, 'current', or a checkpoint path, file:// or http(s) URL "
                                   "(COCO-17 ok; a URL's '#sha256=HEX' is checked)")
    t.add_argument("--pool-data", metavar="DIR", help="a pool set trained on beside --data: the pool's own labels "
                   "and pseudo-labels (cals.training.pool_set); its points carry loss only where labelled")
    t.add_argument("--human-share", type=float, default=0.5,
                   help="with --pool-data, the share of training samples (people) from --data (default 0.5)")
    t.add_argument("--val", help="validation dataset folder; its metrics are stored with the version")
    t.add_argument("--int8-test", metavar="DIR", help="labelled set the version's int8 model (calibrated on "
                   "--data) is checked on before it may be served; default --val; neither: no int8 model")
    t.add_argument("--promote", action="store_true", help="make the new version current (the first one always is)")
    t.add_argument("--work-dir", help="scratch folder for training files (default: a temporary one, removed)")
    t.add_argument("--progress-jsonl", action="store_true",
                   help="print progress as JSON lines ({\"progress\": ...}, then {\"version\": ID}) instead of a bar")
    t.add_argument("--rank-report", metavar="DIR",
                   help="each process writes DIR/rank-N.json: the people (frame, annotation) of its first iteration "
                        "and a digest of its final weights (check a torchrun setup: equal digests, other people)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="COCO OKS AP/AR per group and PCK; prints the metrics JSON")
    e.add_argument("--data", required=True)
    e.add_argument("--registry", help=REGISTRY_HELP)
    e.add_argument("--version", help="version id (default: current)")
    e.add_argument("--out", help="also write the JSON here")
    e.add_argument("--save", action="store_true", help="store the metrics in the version's metadata")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="predict keypoints; writes COCO results JSON with scores")
    r.add_argument("--images", required=True, help="folder of images")
    r.add_argument("--registry", help=REGISTRY_HELP)
    r.add_argument("--version", help="version id (default: current)")
    r.add_argument("--boxes", help="COCO JSON with person boxes (default: detected people, else the whole image)")
    r.add_argument("--detector", help="person detector end2end.onnx (default: $CALS_DETECTOR; "
                                      "without one, the whole image is one person)")
    r.add_argument("--out", required=True, help="results JSON")
    r.set_defaults(func=cmd_predict)

    m = sub.add_parser("models", help="list, promote or roll back registry versions")
    m.add_argument("action", choices=["list", "promote", "rollback"])
    m.add_argument("version", nargs="?", help="version id (promote)")
    m.add_argument("--registry", help=REGISTRY_HELP)
    m.set_defaults(func=cmd_models)

    from cals.sampling.strategies import names as strategy_names
    from cals.simulate.config import SimulationConfig as Sim

    d = Sim(out="")
    sim = sub.add_parser("simulate", help="the active-learning loop offline with a simulated annotator; "
                         "label efficiency of strategies against random (resumable)")
    sim.add_argument("--out", required=True, help="results folder (resumes a run found there)")
    sim.add_argument("--pool", help="COCO keypoints folder as the pool (default: generated, skewed mix)")
    sim.add_argument("--test", help="held-out COCO folder (default: generated, balanced mix)")
    sim.add_argument("--pool-images", type=int, default=d.pool_images)
    sim.add_argument("--test-images", type=int, default=d.test_images)
    sim.add_argument("--pool-mix", default=d.pool_mix, help=f"pose-family mix of a generated pool (default {d.pool_mix})")
    sim.add_argument("--test-mix", default=d.test_mix, help=f"mix of a generated test set (default {d.test_mix})")
    sim.add_argument("--initial", type=int, default=d.initial, help="random labelled images before round 1")
    sim.add_argument("--batch", type=int, default=d.batch, help="images labelled per round")
    sim.add_argument("--rounds", type=int, default=d.rounds)
    sim.add_argument("--strategies", default=",".join(d.strategies),
                     help="comma-separated strategy specs, NAME or NAME:OPT=VALUE,... (random is required); "
                          "a spec ending in @pool, @pseudo or @pool+pseudo also trains on the pool set: "
                          f"{', '.join(strategy_names())}")
    sim.add_argument("--seeds", default=",".join(map(str, d.seeds)), help="comma-separated seeds")
    sim.add_argument("--survey", default="", help="more strategies, run on the first seed only: every strategy "
                                                   "compared at a fraction of the cost (no verdict from one seed)")
    sim.add_argument("--config", default=d.model, help="model config (cpu | rtmpose-m | FILE.py)")
    sim.add_argument("--base-iters", type=int, default=d.base_iters, help="body-only base model (cached)")
    sim.add_argument("--round-iters", type=int, default=d.round_iters, help="fine-tune iterations per round")
    sim.add_argument("--batch-size", type=int, help="training batch size (default: the config's)")
    sim.add_argument("--val-fraction", type=float, default=d.val_fraction,
                     help=f"share of labelled frames the promotion gate validates on, split by the trainer's rule "
                          f"(its CALS_VAL_FRACTION; default {d.val_fraction})")
    sim.add_argument("--margin", type=float, default=d.margin,
                     help=f"promotion margin, as the trainer's CALS_PROMOTE_MARGIN (default {d.margin})")
    sim.add_argument("--metric", default=d.metric,
                     help=f"promotion metric, as the trainer's CALS_PROMOTE_METRIC (default {d.metric})")
    sim.add_argument("--confidence", type=float, default=d.confidence,
                     help="the gate keeps the current model only when the candidate is worse with this confidence, "
                          f"as the trainer's CALS_PROMOTE_CONFIDENCE (default {d.confidence}; 0: on any AP drop)")
    sim.add_argument("--train-from", choices=["current", "base"], default=d.train_from,
                     help="each round fine-tunes the served model (current, as the trainer) or retrains the base "
                          f"model on every labelled frame (default {d.train_from})")
    sim.add_argument("--pseudo-threshold", type=float, default=d.pseudo_threshold,
                     help="campaigns named STRATEGY@pseudo: a served model's spine point scoring at least this "
                          f"becomes a training target, as the trainer's CALS_PSEUDO_THRESHOLD (default {d.pseudo_threshold})")
    sim.add_argument("--human-share", type=float, default=d.human_share,
                     help="campaigns named STRATEGY@pool, @pseudo or @pool+pseudo: share of each batch's people from "
                          f"labelled frames, as the trainer's CALS_HUMAN_SHARE (default {d.human_share})")
    sim.set_defaults(func=cmd_simulate)

    s = sub.add_parser("schema", help="show the keypoint schema")
    s.add_argument("--cvat-spec", action="store_true", help="CVAT label spec (function.yaml / task labels)")
    s.add_argument("--coco", action="store_true", help="the COCO categories entry")
    s.set_defaults(func=cmd_schema)

    from cals.cli import deploy, report

    deploy.add_parsers(sub)
    report.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("mmengine", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    func: Callable = args.func
    try:
        func(args)
    except CalsError as e:
        if args.debug:
            raise
        print(f"cals: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cals: interrupted", file=sys.stderr)
        return 130
    return 0

