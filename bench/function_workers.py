"""Benchmark: the Nuclio function's throughput and latency with 1 and 2 workers on this host.

    python -m bench.function_workers [--workers 1,2] [--clients 1,2] [--requests 24] [--repeats 5]
                                     [--detector end2end.onnx] [--images DIR] [--out FILE]

No Nuclio here, so each worker is modelled as Nuclio runs one: a fresh Python process (spawned, as
Nuclio's python runtime starts one wrapper process per worker) that loads
`serverless/spine-pose/nuclio/main.py`, runs `init_context` through nuclio_sdk's test platform and
then calls `handler` for each event it takes, JSON-decoding the body first as the SDK does for
`application/json`. The environment is the function's (function.yaml's env, CALS_FUNCTION_WORKERS=N,
no OMP_NUM_THREADS), so each worker sizes its own threads. Events go to whichever worker is free (one
shared queue, as Nuclio's worker allocator hands an event to a free worker), with each `--clients`
count of requests in flight in turn (closed loop: a client sends its next request when its answer
comes back; 1 is one annotator's AI Tools calls, 2 two annotators or an automatic annotation beside one).

Configurations, measured in one run, interleaved `--repeats` times (the host is shared and noisy):
`N sized`: N workers with CALS_FUNCTION_WORKERS=N (cores / N threads each), and for N > 1 `N unsized`:
the same N workers each taking every core (CALS_THREADS=cores), what happens without the sizing.

The model is a random-weight RTMPose-m version (the architecture users deploy) with its model.onnx,
served by ONNX Runtime as on any CPU host; speed does not depend on the weights. The requests are
the same real photos in the same order for every configuration (default ../shared/data/real-coco4,
else generated 640x480 frames). Reported: images/s overall, end-to-end latency (queue + service) and
service time (inside the worker) p50/p95 per request, the workers' CPU seconds per image (all their
threads; spinning and contention show up here, and it depends less on other jobs than wall time does),
requests per worker, the threads and peak memory each worker reports, and each configuration's
throughput ratio to 1 worker at the same number of requests in flight. Other jobs' CPU use during each
measurement (the host's busy time from /proc/stat less this benchmark's processes', in cores) is
recorded; the summary's wall-clock figures are medians over the runs other jobs left alone (all runs
are listed too): on a shared host only those compare.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_DETECTOR = SHARED / "models" / "rtmdet-nano-person" / "end2end.onnx"
SHARED_IMAGES = SHARED / "data" / "real-coco4"
QUIET = 0.1  # other jobs' CPU use (cores) under which a run counts as undisturbed
WARMUP = 2  # requests each worker serves before the clock starts (ONNX Runtime's first runs are slow)


def worker(env: dict[str, str], warmup: bytes, tasks, results) -> None:
    """One Nuclio worker: init_context, then handler per event until None. Runs in a spawned process."""
    os.environ.clear()
    os.environ.update(env)  # before torch is imported: the function's container has no OMP_NUM_THREADS
    import importlib.util

    import nuclio_sdk
    import nuclio_sdk.test

    spec = importlib.util.spec_from_file_location("cals_spine_pose_main",
                                                  ROOT / "serverless" / "spine-pose" / "nuclio" / "main.py")
    main = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = main
    spec.loader.exec_module(main)
    platform = nuclio_sdk.test.Platform()
    platform._logger.set_handler("default", open(os.devnull, "w"), nuclio_sdk.logger.HumanReadableFormatter())

    def serve(body: bytes):
        return platform.call_handler(main.handler, nuclio_sdk.Event(body=json.loads(body)))

    start = time.monotonic()
    for _ in range(WARMUP):  # the first call runs init_context
        assert serve(warmup).status_code == 200
    import torch

    service = platform._handler_contexts[main.handler].user_data.service
    network = service.watcher.get().network
    results.put(("ready", os.getpid(), {
        "init_and_warmup_s": round(time.monotonic() - start, 2), "torch_threads": torch.get_num_threads(),
        "pose_session_threads": network.session.get_session_options().intra_op_num_threads,
        "detector_threads": service.detector.session.get_session_options().intra_op_num_threads,
        "backend": network.name, "rss_mb": _rss_mb(), "cpu_s": time.process_time()}))
    while (task := tasks.get()) is not None:
        index, body = task
        t0 = time.monotonic()
        response = serve(body)
        results.put(("done", os.getpid(), {"index": index, "status": response.status_code,
                                           "service_s": time.monotonic() - t0, "cpu_s": time.process_time(),
                                           "shapes": len(json.loads(response.body))}))


def _rss_mb() -> int:
    """This process's peak resident memory (its model, detector and the torch stack), MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def worker_env(base: dict[str, str], registry: Path, detector: Path, cache: Path, workers: int,
               threads: int | None) -> dict[str, str]:
    """The function's environment (function.yaml's env) for one configuration."""
    env = {k: v for k, v in base.items()
           if not k.startswith("CALS_") and k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update({"PYTHONPATH": str(ROOT), "CALS_REGISTRY": str(registry), "CALS_DETECTOR": str(detector),
                "CALS_CACHE": str(cache), "CALS_DEVICE": "cpu", "CALS_FUNCTION_WORKERS": str(workers)})
    if threads:
        env["CALS_THREADS"] = str(threads)
    return env


def run_config(env: dict[str, str], workers: int, bodies: list[bytes], requests: int,
               clients: list[int]) -> dict[int, dict]:
    """Start `workers` worker processes and warm them; then, for each count in `clients`, serve
    `requests` bodies with that many in flight. {clients: figures}."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(env, bodies[0], tasks, results), daemon=True) for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        ready = {}
        while len(ready) < workers:
            _, pid, info = _get(results, procs)
            ready[pid] = info
        out = {}
        cpu = {pid: info["cpu_s"] for pid, info in ready.items()}  # each worker's CPU seconds so far
        for in_flight in clients:
            run = closed_loop(tasks, results, procs, bodies, requests, in_flight)
            done = run.pop("done")
            used = 0.0
            for pid in ready:
                now = max([d["cpu_s"] for d in done if d["pid"] == pid], default=cpu[pid])
                used, cpu[pid] = used + now - cpu[pid], now
            others = run.pop("busy_s") - used - run.pop("main_cpu_s")
            out[in_flight] = {**run, "cpu_s_per_image": round(used / requests, 3),
                              "others_cores": round(max(0.0, others) / run["seconds"], 2),
                              "requests_per_worker": sorted(sum(d["pid"] == pid for d in done) for pid in ready),
                              "workers": list(ready.values())}
        return out
    finally:
        for _ in procs:
            tasks.put(None)
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


def closed_loop(tasks, results, procs, bodies: list[bytes], requests: int, in_flight: int) -> dict:
    """`requests` bodies in order, `in_flight` at a time, each sent as soon as an answer comes back."""
    load_before = os.getloadavg()
    sent: dict[int, float] = {}
    done: list[dict] = []
    busy, main_cpu = _busy_s(), time.process_time()
    start = time.monotonic()
    for index in range(min(in_flight, requests)):
        sent[index] = time.monotonic()
        tasks.put((index, bodies[index % len(bodies)]))
    while len(done) < requests:
        _, pid, info = _get(results, procs)
        info.update(pid=pid, e2e_s=time.monotonic() - sent[info["index"]])
        done.append(info)
        following = len(sent)
        if following < requests:
            sent[following] = time.monotonic()
            tasks.put((following, bodies[following % len(bodies)]))
    elapsed = time.monotonic() - start
    busy, main_cpu = _busy_s() - busy, time.process_time() - main_cpu
    assert all(d["status"] == 200 for d in done), [d for d in done if d["status"] != 200][:3]
    return {"images_per_s": round(requests / elapsed, 2), "seconds": round(elapsed, 2),
            "e2e_ms": _percentiles([d["e2e_s"] * 1000 for d in done]),
            "service_ms": _percentiles([d["service_s"] * 1000 for d in done]),
            "shapes_per_image": [next(d["shapes"] for d in done if d["index"] % len(bodies) == k)
                                 for k in range(min(len(bodies), requests))],
            "load_avg_before": load_before, "load_avg_after": os.getloadavg(), "done": done,
            "busy_s": busy, "main_cpu_s": main_cpu}


def _busy_s() -> float:
    """CPU seconds the whole host has spent busy (all processes, all cores) since boot: /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _get(results, procs):
    """The next result; fails if a worker died instead of answering."""
    import queue

    while True:
        try:
            return results.get(timeout=5)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode is not None]
            if dead:
                raise RuntimeError(f"a worker exited with {dead[0]}") from None


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 1),
            "p95": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 1)}


def request_bodies(images: Path | None, work: Path) -> tuple[list[bytes], list[str]]:
    """CVAT's request bodies (JSON, base64 image) for the photos in `images`, else generated frames."""
    import base64

    if images and images.is_dir():
        files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    else:
        from bench.serving import frames

        files = [path for _, _, path in frames(work, 1, 8)]
    if not files:
        sys.exit(f"function_workers: no images in {images}")
    return [json.dumps({"image": base64.b64encode(f.read_bytes()).decode()}).encode() for f in files], \
        [f.name for f in files]


def configurations(worker_counts: list[int], cores: int) -> list[tuple[str, int, int | None]]:
    """(name, workers, CALS_THREADS or None): each count sized, and each count > 1 also unsized."""
    found = []
    for n in worker_counts:
        found.append((f"{n} sized", n, None))
        if n > 1:
            found.append((f"{n} unsized", n, cores))
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated (default 1,2)")
    parser.add_argument("--clients", default="1,2", help="requests in flight, comma-separated (default 1,2)")
    parser.add_argument("--requests", type=int, default=24, help="timed requests per measurement (default 24)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of every configuration (default 5)")
    parser.add_argument("--detector", type=Path, default=Path(os.environ.get("CALS_DETECTOR") or SHARED_DETECTOR))
    parser.add_argument("--images", type=Path, default=SHARED_IMAGES, help="request photos (default ../shared's)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/function-workers.json"))
    args = parser.parse_args(argv)
    if not args.detector.is_file():
        sys.exit(f"function_workers: no detector at {args.detector}; pass --detector end2end.onnx or set CALS_DETECTOR")
    counts = [int(n) for n in args.workers.split(",")]
    clients = [int(n) for n in args.clients.split(",")]
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="cals-bench-workers-") as tmp:
        result = bench(Path(tmp), counts, clients, cores, args)
    result["command"] = " ".join(["python -m bench.function_workers", *(sys.argv[1:] if argv is None else argv)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written: {args.out}")
    return result


def bench(work: Path, counts: list[int], clients: list[int], cores: int, args) -> dict:
    from bench.serving import version_folder
    from cals.model.train import version_files
    from cals.registry import Registry

    version = version_folder("rtmpose-m", work)
    registry = Registry(work / "registry")
    registry.promote(registry.add(version_files(version), meta={"config": "rtmpose-m"}).id)
    bodies, names = request_bodies(args.images, work)
    configs = configurations(counts, cores)
    runs: dict[str, list[dict]] = {f"{name}, {c} in flight": [] for name, _, _ in configs for c in clients}
    for repeat in range(args.repeats):
        for name, n, threads in configs:
            env = worker_env(dict(os.environ), registry.root, args.detector, work / "cache", n, threads)
            for c, run in run_config(env, n, bodies, args.requests, clients).items():
                runs[f"{name}, {c} in flight"].append(run)
                print(json.dumps({"config": name, "in_flight": c, "repeat": repeat, **{k: run[k] for k in (
                    "images_per_s", "e2e_ms", "service_ms", "cpu_s_per_image", "others_cores",
                    "requests_per_worker")}}), flush=True)
    summary = summarize(runs)
    shapes = {json.dumps(r["shapes_per_image"]) for measured in runs.values() for r in measured}
    return {"what": "the Nuclio function's handler in N worker processes, fed concurrently (RTMPose-m, ONNX Runtime)",
            "cores": cores, "requests": args.requests, "repeats": args.repeats, "images": names,
            "shapes_per_image": json.loads(min(shapes)), "same_answers_everywhere": len(shapes) == 1,
            "summary": summary, "runs": runs}


def summarize(runs: dict[str, list[dict]]) -> dict:
    """Per configuration: wall-clock figures over the quiet runs (other jobs under QUIET cores; the least
    disturbed run where none was), CPU per image, memory, and the throughput ratio to 1 worker."""
    summary = {}
    for key, measured in runs.items():
        quiet = [r for r in measured if r["others_cores"] <= QUIET] or [min(measured, key=lambda r: r["others_cores"])]
        summary[key] = {"threads_per_worker": measured[0]["workers"][0]["pose_session_threads"],
                        "quiet_runs": len(quiet),
                        "images_per_s": round(statistics.median(r["images_per_s"] for r in quiet), 2),
                        "e2e_p50_ms": round(statistics.median(r["e2e_ms"]["p50"] for r in quiet), 1),
                        "e2e_p95_ms": round(statistics.median(r["e2e_ms"]["p95"] for r in quiet), 1),
                        "cpu_s_per_image": round(statistics.median(r["cpu_s_per_image"] for r in quiet), 3),
                        "all_runs": {"images_per_s": [r["images_per_s"] for r in measured],
                                     "others_cores": [r["others_cores"] for r in measured]},
                        "rss_mb_per_worker": max(w["rss_mb"] for r in measured for w in r["workers"])}
    for key, row in summary.items():
        base = summary.get(f"1 sized, {key.split(', ')[1]}")
        row["ratio_to_1_worker"] = round(row["images_per_s"] / base["images_per_s"], 2) if base else None
    return summary


def table(result: dict) -> str:
    """Markdown: one line per configuration and requests in flight, figures of its quiet runs."""
    lines = [f"{result['cores']} cores; {result['requests']} requests per run, {result['repeats']} runs; "
             f"skeletons per image {result['shapes_per_image']}; medians of the runs other jobs left alone "
             f"(under {QUIET} cores of theirs)",
             "| workers, requests in flight | threads each | images/s | ratio to 1 worker | latency p50 / p95 ms | "
             "CPU s per image | quiet runs | all runs: images/s (other jobs' cores) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, s in result["summary"].items():
        every = ", ".join(f"{v} ({o})" for v, o in zip(s["all_runs"]["images_per_s"], s["all_runs"]["others_cores"]))
        lines.append(f"| {key} | {s['threads_per_worker']} | {s['images_per_s']} | {s['ratio_to_1_worker']} | "
                     f"{s['e2e_p50_ms']} / {s['e2e_p95_ms']} | {s['cpu_s_per_image']} | {s['quiet_runs']} | {every} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
