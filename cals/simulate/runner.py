"""Run a whole simulation: data, the cached base model, round 0 per seed (shared by every
strategy: the same random initial frames), then each strategy's rounds; resumable at round level."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cals.data.pool import LocalPool
from cals.sampling.scoring import Scorer
from cals.schema import Schema, load_schema
from cals.simulate import data
from cals.simulate.base_model import base_model, seed_registry
from cals.simulate.config import POOL_PARTS, SimulationConfig, split_campaign
from cals.simulate.loop import Campaign, annotator_work, pick, run_round
from cals.simulate.summary import summarize

log = logging.getLogger(__name__)


def run_simulation(cfg: SimulationConfig, *, schema: Schema | None = None, progress: bool = True) -> dict:
    """Run (or resume) every campaign and write results.json, results.csv and the plot under cfg.out."""
    schema = schema or load_schema()
    cfg.check_resume()
    out = Path(cfg.out)
    pool = data.ensure_dataset(cfg.pool, out / "data" / "pool", cfg.pool_images, cfg.pool_mix, 101, cfg.max_people)
    test = data.ensure_dataset(cfg.test, out / "data" / "test", cfg.test_images, cfg.test_mix, 303, cfg.max_people)
    names = data.image_names(pool, schema)
    if len(names) < cfg.budget:
        raise_budget(len(names), cfg)
    view = data.body_only(pool, out / "data" / "pool-body", schema)
    base = base_model(view, schema, model=cfg.model, iters=cfg.base_iters, batch_size=cfg.batch_size)
    total = sum(len(_starts(cfg.strategies_for(seed))) + len(cfg.strategies_for(seed)) * cfg.rounds
                for seed in cfg.seeds)
    with tqdm(total=total, desc="simulated rounds", unit="round", disable=not progress) as bar:
        for seed in cfg.seeds:
            starts = {name: _round_zero(cfg, schema, seed, base, names, pool, view, test, bar, name)
                      for name in _starts(cfg.strategies_for(seed))}
            for strategy in cfg.strategies_for(seed):
                start = starts[_start_of(strategy)]
                c = _campaign(cfg, schema, strategy, seed, pool, view, test)
                if not c.folder.exists():
                    shutil.copytree(start.folder, c.folder, symlinks=True)
                    state = c.load_state()
                    for row in state["rounds"]:
                        row["strategy"] = strategy
                    c.save_state(state)
                state = c.load_state()
                bar.update(len(state["rounds"]) - 1)
                while len(state["rounds"]) <= cfg.rounds:
                    picked, annotator = pick(c, state)
                    run_round(c, state, picked, annotator)
                    bar.update(1)
    return summarize(out, cfg, schema)


def _start_of(strategy: str) -> str:
    """The round 0 a campaign starts from: "initial" (human labels alone) or "initial@pool+pseudo"
    (the same 20 frames, trained with the campaign's pool set): one per way of training."""
    parts = split_campaign(strategy)[1]
    return "initial" + ("@" + "+".join(p for p in POOL_PARTS if p in parts) if parts else "")


def _starts(strategies: list[str]) -> list[str]:
    return list(dict.fromkeys(_start_of(s) for s in strategies))


def _round_zero(cfg, schema, seed, base, names, pool, view, test, bar, name: str) -> Campaign:
    c = _campaign(cfg, schema, name, seed, pool, view, test)
    state = c.load_state()
    if not state["rounds"]:
        c.folder.mkdir(parents=True, exist_ok=True)
        if c.registry.current() is None:
            seed_registry(c.registry, base)
        rng = np.random.default_rng(seed)
        picked = sorted(rng.choice(names, cfg.initial, replace=False).tolist())
        scorer = Scorer(c.predictor(c.registry.current().id), cache=c.cache)
        run_round(c, state, picked, annotator_work(c, scorer, LocalPool(view, schema), picked))
    bar.update(1)
    return c


def _campaign(cfg, schema, strategy, seed, pool, view, test) -> Campaign:
    folder = Path(cfg.out) / "runs" / f"seed{seed}" / strategy
    return Campaign(cfg, schema, strategy, seed, folder, pool, view, test)


def raise_budget(available: int, cfg: SimulationConfig) -> None:
    from cals.errors import CalsError

    raise CalsError(f"the pool has {available} frames with people, fewer than the labelling budget "
                    f"{cfg.budget} (initial {cfg.initial} + {cfg.rounds} rounds x {cfg.batch})")
