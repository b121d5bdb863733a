"""`cals train`, `cals evaluate`, `cals predict`, `cals models`: the model registry's versions."""
from __future__ import annotations

import json
import logging
import sys

from cals.cli.common import REGISTRY_HELP, emit, registry_of, schema_of
from cals.errors import CalsError


def add_parsers(sub) -> None:
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


def cmd_train(args) -> None:
    """Alone or as one rank under torchrun: rank 0 registers, promotes and prints; every rank trains."""
    from cals.model import distributed
    from cals.model.train import train

    registry = registry_of(args)
    out = sys.stdout  # training sends stdout to stderr (mmengine prints); progress lines go here
    report = (lambda state: print(json.dumps({"progress": state}), file=out, flush=True)) \
        if args.progress_jsonl else None
    try:
        version = train(args.data, registry, config=args.config, schema=schema_of(args),
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

    registry = registry_of(args)
    predictor = Predictor.from_registry(registry, args.version)
    metrics = evaluate_predictor(predictor, args.data)
    if args.save:
        registry.update_meta(predictor.version_id, metrics=metrics)
    emit(metrics, args.out)


def cmd_predict(args) -> None:
    from cals.model.images import predict_folder
    from cals.model.predict import Predictor

    predictor = Predictor.from_registry(registry_of(args), args.version)
    detector = None
    from cals.settings import ModelEnv

    if not args.boxes and (args.detector or ModelEnv.load().DETECTOR):
        from cals.model.detector import PersonDetector

        detector = PersonDetector(args.detector)
    results = predict_folder(predictor, args.images, boxes=args.boxes, detector=detector)
    emit(results, args.out)
    logging.getLogger("cals").info("wrote %d people to %s", len(results), args.out)


def cmd_models(args) -> None:
    registry = registry_of(args)
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
