"""`cals simulate`: the active-learning loop offline with a simulated annotator (what `make demo` runs)."""
from __future__ import annotations

from cals.cli.common import schema_of


def add_parsers(sub) -> None:
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
    doc = run_simulation(cfg, schema=schema_of(args))
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
