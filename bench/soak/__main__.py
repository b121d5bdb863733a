"""`make soak`: CALS run for an hour against a real CVAT, with faults, as a team would run it.

    python -m bench.soak [--minutes 60] [--faults all] [--out bench/results/soak.json] [--plot docs/soak.png]

Needs a running CVAT (CVAT_URL, CVAT_USER, CVAT_PASSWORD; `make soak` starts ../shared/realcvat's)
whose lambda manager calls the Nuclio dashboard at CVAT_NUCLIO_PORT (8070) and may send webhooks to
127.0.0.1. What runs:
- the trainer and the sampler as services (`python -m trainer`, `python -m sampler serve`, gunicorn),
  with deploy/.env written by `cals setup-project` and compose's overrides; they reach CVAT through a
  proxy the soak can cut;
- the Nuclio function in worker processes as Nuclio runs it (bench/soak/function_pool.py), called by
  CVAT's own lambda manager;
- the initial model: RTMPose-m (the architecture users deploy) with random weights, so every run
  trains and the gate promotes (CALS_PROMOTE_MARGIN=1: each promotion reloads the function's workers);
- a scripted annotator (cvat-sdk) that corrects and completes a job every --job-every seconds and
  asks for the next round when one is done; AI-tools calls through CVAT every --request-every seconds;
- the faults (bench/soak/faults.py), in order, from minute 5; the last window runs without faults.
Every minute: each process's RSS and open files, the services' /health, the trainer's runs and CVAT's
webhook deliveries. Writes the JSON record and a PNG plot, and prints one verdict line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from bench.soak.faults import FAULTS

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
log = logging.getLogger("soak")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 60)),
                   help="length of the soak (default 60, or $SOAK_MINUTES)")
    p.add_argument("--faults", default="all", help=f"'all', 'none' or a comma list of {list(FAULTS)}")
    p.add_argument("--faults-from", type=float, default=5, help="minute the first fault starts (default 5)")
    p.add_argument("--job-every", type=float, default=150, help="seconds between the annotator's jobs (default 150)")
    p.add_argument("--request-every", type=float, default=4, help="seconds between AI-tools calls (default 4)")
    p.add_argument("--function-workers", type=int, default=2, help="Nuclio workers of the function (default 2)")
    p.add_argument("--pool", type=int, default=300, help="generated frames in the pool task (default 300)")
    p.add_argument("--round-size", type=int, default=20)
    p.add_argument("--job-size", type=int, default=5)
    p.add_argument("--train-iters", type=int, default=20, help="CALS_TRAIN_ITERS of every run (default 20)")
    p.add_argument("--catch-up-seconds", type=float, default=120, help="CALS_CATCHUP_SECONDS (default 120)")
    p.add_argument("--detector", type=Path, default=SHARED / "models" / "rtmdet-nano-person" / "end2end.onnx")
    p.add_argument("--work", type=Path, default=None, help="work folder (default a new one under /tmp)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "soak.png")
    args = p.parse_args(argv)
    names = list(FAULTS) if args.faults == "all" else [] if args.faults == "none" else args.faults.split(",")
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        p.error(f"unknown fault(s) {unknown}; choose from {list(FAULTS)}")
    args.fault_names = names
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s soak: %(message)s")
    args = parse(argv)
    for name in ("CVAT_URL", "CVAT_USER", "CVAT_PASSWORD"):
        if not os.environ.get(name):
            sys.exit(f"soak: set {name} (make soak starts ../shared/realcvat and sets it)")
    if not args.detector.is_file():
        sys.exit(f"soak: no person detector at {args.detector}; pass --detector end2end.onnx")
    work = args.work or Path(f"/tmp/cals-soak-{time.strftime('%Y%m%d-%H%M%S')}")
    work.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        from bench.soak.setup import build
        soak, record, threads = build(args, work, stack)
        record["faults"] = timeline(args, soak, record)
        finish(soak, record, threads)
    from bench.soak.report import plot, summarize

    summary = summarize(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**record, "summary": summary}, indent=1, default=str) + "\n")
    plot(record, summary, args.plot)
    for check in summary["checks"]:
        mark = {True: "ok  ", False: "FAIL", None: "n/a "}[check["ok"]]
        print(f"{mark} {check['check']}: {check['detail']}")
    print(f"written: {args.out}, {args.plot}")
    print(summary["verdict"])
    return 0 if summary["verdict"].split(": ", 1)[1].startswith("PASS") else 1


def timeline(args, soak, record: dict) -> list[dict]:
    """Steady work; from --faults-from the faults in order; then steady work to the end."""
    start, end = record["started"], record["started"] + args.minutes * 60
    pending = list(args.fault_names)
    faults, next_job = [], time.time()
    while time.time() < end:
        if pending and time.time() >= start + args.faults_from * 60:
            name = pending.pop(0)
            log.info("fault %s", name)
            try:
                faults.append(FAULTS[name](soak))
            except Exception as exc:  # a fault that could not run is a failed check, not a crashed soak
                log.exception("fault %s", name)
                faults.append({"fault": name, "how": "raised", "at": time.time(), "seconds": 0,
                               "holds": [{"check": "the fault ran", "ok": False, "detail": f"{type(exc).__name__}: {exc}"}]})
            log.info("fault %s: %s", name, [(h["check"][:40], h["ok"]) for h in faults[-1]["holds"]])
            next_job = time.time() + args.job_every
            continue
        if time.time() >= next_job:
            try:
                done = soak.annotator.complete_one()
                log.info("completed %s", done)
            except Exception as exc:
                soak.annotator.errors.append(f"{time.time():.0f} {type(exc).__name__}: {exc}")
                log.warning("annotator: %s", exc)
            next_job = time.time() + args.job_every
        time.sleep(1)
    record["seconds"] = time.time() - start
    return faults


def finish(soak, record: dict, threads: dict) -> None:
    """Stop the load and the samples; let the trainer learn what is queued; collect the record."""
    threads["load"].halt.set()
    threads["sampler"].halt.set()
    threads["load"].join(150)  # its call in flight ends before the function's workers are stopped
    drained = soak.idle(1200)
    runs = soak.runs()
    record.update({
        "drained": drained, "calls": threads["load"].calls, "samples": threads["sampler"].samples,
        "completed": [vars(c) for c in soak.annotator.completed], "annotator_errors": soak.annotator.errors,
        "learned": soak.learned(), "runs": runs, "windows": soak.windows,
        "learned_at": [_epoch(r["finished_at"]) for r in runs if r["state"] == "succeeded" and r.get("finished_at")],
        "starts": {"trainer": soak.trainer.started_at, "sampler": soak.sampler.started_at},
        "health_errors": [e for s in threads["sampler"].samples for e in s.get("health_errors", [])],
        "deliveries": threads["deliveries"](),
    })


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


if __name__ == "__main__":
    sys.exit(main())
