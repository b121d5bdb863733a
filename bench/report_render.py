"""Benchmark: the loop report for a long campaign, as GET /report builds it.

    python -m bench.report_render [--rounds 50] [--jobs 20] [--repeats 5] [--out FILE]

A campaign of `--rounds` rounds of `--jobs` jobs (5 frames, 2 people each; tests/report_records.py)
is written as the sampler and trainer write it, and viewed as GET /report builds it (`loop_report`
without CVAT's listing, then `render_page` with its four plots), in this process:
- cold: the first view, every round but the last computed (the numbers cache is empty);
- refresh after a round: what the trainer's worker spends right after the run that learned the last
  round, computing that round's numbers (trainer/report.py `refresh_numbers`), so views stay warm;
- warm: `--repeats` views with nothing new to compute: a page view in the trainer.
Target (issue 35): the page in at most 1 s for 50 rounds of 20 jobs (`met`: the warm views' median).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", help="write the result JSON here")
    args = p.parse_args(argv)

    from cals.registry import Registry
    from cals.schema import load_schema
    from cals.training.queue import RunQueue
    from cals.training.report import NumbersCache, loop_report, render_page
    from tests.report_records import write_campaign

    schema = load_schema()
    with tempfile.TemporaryDirectory(prefix="cals-report-bench-") as tmp:
        data = Path(tmp) / "data"
        write_campaign(data, schema, rounds=args.rounds, jobs=args.jobs)
        registry, queue = Registry(str(Path(tmp) / "registry")), RunQueue(data / "queue.sqlite3")
        cache = NumbersCache(data / "report" / "numbers.json")

        def view() -> tuple[float, float, int]:
            t0 = time.perf_counter()
            report = loop_report(data, registry, queue, schema, tolerance=0.5, cache=cache)
            t1 = time.perf_counter()
            page = render_page(report)
            return t1 - t0, time.perf_counter() - t1, len(page)

        last = data / "sampler" / "rounds" / "project-1" / f"round-{args.rounds}" / "round.json"
        hidden = last.with_suffix(".hidden")
        last.rename(hidden)
        cold = view()  # every round but the last: the numbers computed, as at a trainer's first view
        hidden.rename(last)
        new_round = view()  # as the worker's refresh after the run that learned the last round
        warm = [view() for _ in range(args.repeats)]
    result = {"rounds": args.rounds, "jobs_per_round": args.jobs, "frames": args.rounds * args.jobs * 5,
              "repeats": args.repeats, "page_bytes": warm[-1][2], "target_s": 1.0,
              "cold_s": {"numbers": round(cold[0], 3), "page": round(cold[1], 3)},
              "refresh_after_a_round_s": round(new_round[0], 3),
              "warm_s": {"numbers": _spread([w[0] for w in warm]), "page": _spread([w[1] for w in warm]),
                         "total": _spread([w[0] + w[1] for w in warm])}}
    result["met"] = result["warm_s"]["total"]["median"] <= 1.0
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return result


def _spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


if __name__ == "__main__":
    main()
