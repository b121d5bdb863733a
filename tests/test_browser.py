"""The annotator's view: CALS inside the real CVAT web UI, driven in headless Chromium.

Five scenarios, each as a person does it, against a real CVAT with its UI (make test-browser):
1. an annotator opens job 1 of the round the sampler opened: the top-ranked frames in rank order,
   each person pre-annotated with the spine points shown;
2. AI Tools → Detectors → the CALS function draws skeletons on a frame, and the task's Actions →
   Automatic annotation annotates every frame;
3. points to check: the Filters dialog leaves the flagged people, and a flagged point shows its confidence;
4. the annotator drags a spine point, saves and finishes the job from the menu; CVAT's webhook
   reaches the trainer, which fine-tunes and promotes, and the next AI Tools call is served by the
   new version;
5. the team lead opens the trainer's loop report page: round 1 open, the dragged point measured.
What compose runs next to CVAT is served in-process over real HTTP: the trainer, the sampler and,
in place of Nuclio, tests/nuclio_dashboard.py running the real function handler. Screenshots go to
$SCREENSHOTS_DIR (make screenshots: docs/screenshots, shown in the README and docs/walkthrough.md).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from cvat_sdk import Client, models

from cals.cli import main
from cals.registry import Registry
from tests import cvat_ui
from tests.test_lambda_manager import FUNCTION, _answered, dashboard_unavailable, function_dashboard
from tests.test_walkthrough import deployed, running_services
from tests.trainer_helpers import HttpClient, wait_for_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROUND, JOB = 10, 5
MODEL_NAME = "CALS spine pose"  # function.yaml's metadata.annotations.name, as CVAT lists it
AI_TASK, AI_FRAMES = "ai-tools", 3


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    where = os.environ.get("SCREENSHOTS_DIR")
    return Path(where) if where else tmp_path_factory.mktemp("screenshots")


def test_the_browser_leaves_nothing_in_the_temp_dir(monkeypatch):
    """Chromium left a `.org.chromium.Chromium.*` profile in the temp dir per browser started."""
    if not (shutil.which(cvat_ui.CHROMIUM) and shutil.which(cvat_ui.CHROMEDRIVER)):
        pytest.skip(f"no {cvat_ui.CHROMIUM} / {cvat_ui.CHROMEDRIVER}")
    pytest.importorskip("selenium")
    # a short path: Chromium's profile lock is a Unix socket in it, and pytest's tmp_path is too long for one
    temp = Path(tempfile.mkdtemp(prefix="cals-t-"))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    try:
        with cvat_ui.chromium() as driver:
            driver.get("data:text/html,<title>cals</title>")
            assert driver.title == "cals" and any(temp.iterdir())  # it did work in our temp dir
        assert list(temp.iterdir()) == []
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ui_url(cvat_server) -> str:
    reason = cvat_ui.unavailable()
    if reason:
        pytest.skip(reason)
    if not cvat_server.real:
        pytest.skip("the CVAT test server has no web UI; runs against a real CVAT (make test-browser)")
    reason = dashboard_unavailable()
    if reason:
        pytest.skip(reason)
    return os.environ["CVAT_UI_URL"]


class Loop:
    """The deployed loop for one project: CVAT ids, service URLs, the registry, the function's calls."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def _register(cvat_server, username: str, password: str) -> int:
    """A new CVAT account through the sign-up endpoint the UI's "Create an account" page uses."""
    with Client(cvat_server.url, check_server_version=False) as anonymous:
        _, response = anonymous.api_client.auth_api.create_register(
            models.RegisterSerializerExRequest(username=username, email=f"{username}@example.com",
                                               password1=password, password2=password,
                                               first_name="Ann", last_name="Otator"),
            _parse_response=False)
        assert response.status == 201, response.data
    with cvat_server.make_client() as admin:
        (user,) = [u for u in admin.users.list() if u.username == username]
        return user.id


@pytest.fixture(scope="module")
def loop(ui_url, cvat_server, schema, trained, tmp_path_factory) -> Iterator[Loop]:
    """Project, pool and round 1 opened by the sampler; trainer, sampler and function running;
    an annotator account assigned to round 1's first job."""
    tmp = tmp_path_factory.mktemp("browser-loop")
    d = deployed(cvat_server, schema, trained, tmp, images=24, seed=41, name=f"spine-{uuid.uuid4().hex[:6]}")
    env, frames, project_id, registry = d.env, d.frames, d.project_id, d.registry
    d.sampler_cfg.update(ROUND_SIZE=ROUND, JOB_SIZE=JOB, AUTO_OPEN=False)
    username, password = f"annotator-{uuid.uuid4().hex[:6]}", f"An-{uuid.uuid4().hex[:12]}"
    annotator = _register(cvat_server, username, password)
    # the function serves what the trainer promotes
    with function_dashboard(registry) as dashboard, \
            running_services(d.trainer_cfg, d.sampler_cfg, d.port) as (trainer_url, sampler_url):
        first = _open_round(env, sampler_url)
        with cvat_server.make_client() as admin:
            task = admin.tasks.retrieve(first["task_id"])
            jobs = sorted(task.get_jobs(), key=lambda j: j.start_frame)
            # The task and its first job go to the annotator: CVAT lists a task only to its owner and
            # assignees (a job's assignee finds the job on the Jobs page, not the task).
            task.update(models.PatchedTaskWriteRequest(assignee_id=annotator))
            jobs[0].update(models.PatchedJobWriteRequest(assignee=annotator))
        yield Loop(env=env, frames=frames, tmp=tmp, project_id=project_id, registry=registry, round=first,
                   task_id=task.id, job_ids=[j.id for j in jobs], function=dashboard.functions[FUNCTION],
                   trainer_url=trainer_url, sampler_url=sampler_url, user=username, password=password)
    with cvat_server.make_client() as admin:  # the project's tasks go with it
        admin.projects.remove_by_ids([project_id])
        admin.api_client.users_api.destroy(annotator)


def _open_round(env: Path, sampler_url: str) -> dict[str, Any]:
    """`cals round` through the sampler service, as the walkthrough's step 6 (README); its JSON answer."""
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        assert main(["round", "--env-file", str(env), "--sampler-url", sampler_url]) == 0
    opened = json.loads(out.getvalue())
    assert opened["number"] == 1 and len(opened["frames"]) == ROUND, opened
    return opened


@pytest.fixture
def browser(loop, ui_url, shots, request, tmp_path) -> Iterator[cvat_ui.CvatUi]:
    """A fresh browser per scenario; on failure the page is saved (screenshot, console) in tmp_path."""
    with cvat_ui.chromium() as driver:
        ui = cvat_ui.CvatUi(driver, ui_url, shots)
        yield ui
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ui.shots = tmp_path
            print(f"failure screenshot: {ui.shot('failure')}; browser console errors: {ui.console_errors()}")


def _spine_label_ids(cvat_server, task_id: int, schema) -> dict[int, str]:
    """CVAT's sublabel id -> point name of the spine points (the canvas tags circles with label ids)."""
    spine = {schema.names[i] for i in schema.groups["spine"]}
    with cvat_server.make_client() as admin:
        (label,) = admin.tasks.retrieve(task_id).get_labels()
        return {s.id: s.name for s in label.sublabels if s.name in spine}


def _inside(ui: cvat_ui.CvatUi, point: cvat_ui.CanvasPoint) -> bool:
    """The point lies on the frame's image as the canvas shows it."""
    image = ui.image_box()
    return (image["x"] <= point.x <= image["x"] + image["width"]
            and image["y"] <= point.y <= image["y"] + image["height"])


def test_annotator_meets_round_1_ranked_and_pre_annotated(loop, browser, cvat_server, schema):
    ui = browser
    ui.login(loop.user, loop.password)
    ui.open_task_from_list("round 1")
    ui.shot("1-round-task")
    ui.open_job_from_task(loop.job_ids[0])

    # the first frame: every pre-annotated person drawn as a skeleton, spine points shown on the image
    with cvat_server.make_client() as admin:
        stored = [s for s in admin.jobs.retrieve(loop.job_ids[0]).get_annotations().shapes if s.frame == 0]
    spine = _spine_label_ids(cvat_server, loop.task_id, schema)
    skeletons = ui.until(lambda: len(ui.skeletons()) == len(stored) and ui.skeletons(),
                         f"{len(stored)} skeletons on frame 0")
    assert ui.sidebar_objects() == ["SKELETON SHAPE"] * len(stored)
    for points in skeletons:
        shown = {p.label_id for p in points if not p.hidden and _inside(ui, p)}
        assert set(spine) <= shown, f"spine points not shown: {[spine[i] for i in set(spine) - shown]}"
    ui.shot("1-round-1-job-1")

    # job 1 holds the top-ranked frames, in rank order
    names = [ui.frame_name()]
    for _ in range(JOB - 1):
        ui.next_frame()
        names.append(ui.frame_name())
    assert [Path(n).name for n in names] == loop.round["frames"][:JOB]


CHECK_FILTER = {"and": [{"==": [{"var": "attr.person.check"}, True]}]}  # what the Filters dialog writes


def _named(values, specs) -> dict[str, str]:
    names = {a.id: a.name for a in specs}
    return {names[v["spec_id"]]: v["value"] for v in values}


def _flag_one_skeleton(cvat_server, job_id: int, frame: int) -> tuple[dict, str, str]:
    """Leave exactly one skeleton of `frame` flagged (`check` true), as an annotator leaves the others
    once checked; (its point to check: sublabel id, name, confidence). Raw REST: the SDK's models are
    newer than the server's."""
    from tests.test_lambda_manager import _api

    with cvat_server.make_client() as admin:
        (label,) = admin.jobs.retrieve(job_id).get_labels()
        status, data = _api(admin, "GET", f"/api/jobs/{job_id}/annotations")
        assert status == 200, data
        shapes = [s for s in data["shapes"] if s["frame"] == frame]
        points = {sub.id: sub for sub in label.sublabels}

        def flagged_points(shape) -> list[dict]:
            return [e for e in shape["elements"] if not e["outside"]
                    and _named(e["attributes"], points[e["label_id"]].attributes)["check"] == "true"]

        chosen = max(shapes, key=lambda s: len(flagged_points(s)))
        check = next(a.id for a in label.attributes if a.name == "check")
        for shape in shapes:
            shape["attributes"] = [{**a, "value": "true" if shape is chosen else "false"} if a["spec_id"] == check
                                   else a for a in shape["attributes"]]
        status, body = _api(admin, "PATCH", f"/api/jobs/{job_id}/annotations?action=update",
                            {"version": 0, "tags": [], "shapes": shapes, "tracks": []})
        assert status == 200, body
    assert flagged_points(chosen), "the flagged skeleton has no point to check"
    point = min(flagged_points(chosen), key=lambda e: int(_named(e["attributes"], points[e["label_id"]].attributes)
                                                          ["confidence"]))
    sub = points[point["label_id"]]
    return point, sub.name, _named(point["attributes"], sub.attributes)["confidence"]


def test_points_to_check_filter_flagged_skeletons_and_show_each_point_confidence(loop, browser, cvat_server):
    """The guide in the README and docs/walkthrough.md: Filters → `attr.person.check == true` leaves the flagged people; hovering one
    shows each point's `check` and `confidence` beside it. On job 2 of round 1, as the project's admin."""
    ui, job_id = browser, loop.job_ids[1]
    with cvat_server.make_client() as admin:
        counts = {}
        for shape in admin.jobs.retrieve(job_id).get_annotations().shapes:
            counts[shape.frame] = counts.get(shape.frame, 0) + 1
    frame = next((f for f in sorted(counts) if counts[f] >= 2), None)
    assert frame is not None, f"no frame of job {job_id} with two people: {counts}"
    point, name, confidence = _flag_one_skeleton(cvat_server, job_id, frame)

    ui.login(cvat_server.user, cvat_server.password)
    ui.remember_filter(CHECK_FILTER)
    ui.open_job(loop.task_id, job_id, frame)
    assert len(ui.skeletons()) == counts[frame]
    ui.apply_recent_filter("check")
    (flagged,) = ui.until(lambda: len(ui.skeletons()) == 1 and ui.skeletons(), "only the flagged skeleton shown")
    ui.shot("4-points-to-check-filter")

    circle = next(p for p in flagged if p.label_id == point["label_id"])
    assert not circle.hidden
    ui.hover(ui.circle(point["label_id"]))
    text = ui.until(lambda: next((t for t in ui.canvas_texts() if name.lower() in t.lower()
                                  and f"confidence: {confidence}" in t), None),
                    f"{name}'s confidence {confidence} beside it")
    assert "check: true" in text, text
    ui.shot("4-points-to-check-confidence")


def _new_task(loop, cvat_server, name: str, frames: int) -> tuple[int, int]:
    """(task id, job id): a task of the project with `frames` frames and no annotations, assigned to
    the annotator."""
    names = sorted(p.name for p in (loop.frames / "images").iterdir())[:frames]
    with cvat_server.make_client() as admin:
        task = admin.tasks.create_from_data({"name": name, "project_id": loop.project_id},
                                            [loop.frames / "images" / n for n in names],
                                            data_params={"sorting_method": "predefined"})
        user = next(u for u in admin.users.list() if u.username == loop.user)
        task.update(models.PatchedTaskWriteRequest(assignee_id=user.id))
        (job,) = task.get_jobs()
        return task.id, job.id


def _spine_shown(answer: list[dict[str, Any]], spine_names: set[str]) -> list[int]:
    """Per skeleton of a function answer: how many spine points it shows (sorted)."""
    return sorted(sum(1 for e in s["elements"] if e["label"] in spine_names and not e["outside"]) for s in answer)


def _ai_tools_call(ui: cvat_ui.CvatUi, loop, before: int, shot: str | None = None):
    """Run AI Tools → Detectors on the open frame; the function's invocation once the canvas shows it."""
    drawn = len(ui.skeletons())
    ui.ai_tools_detect(MODEL_NAME, before_run=lambda: shot and ui.shot(shot))
    invocation = ui.until(lambda: len(loop.function.invocations) > before and loop.function.invocations[before],
                          "the CALS function to be called")
    expected = drawn + len(_answered(invocation))
    ui.until(lambda: len(ui.skeletons()) == expected, f"{expected} skeletons on the canvas after AI Tools")
    return invocation


def test_ai_tools_and_automatic_annotation_draw_spine_skeletons(loop, browser, cvat_server, schema):
    ui, (task_id, job_id) = browser, _new_task(loop, cvat_server, AI_TASK, AI_FRAMES)
    spine = _spine_label_ids(cvat_server, task_id, schema)
    ui.login(loop.user, loop.password)
    ui.open_task_from_list(AI_TASK)
    ui.open_job_from_task(job_id)
    assert ui.skeletons() == []

    # AI Tools on frame 0: the answer's skeletons are drawn with their spine points on the image
    calls = len(loop.function.invocations)
    invocation = _ai_tools_call(ui, loop, calls, shot="2-ai-tools-dialog")
    answer = _answered(invocation)
    assert answer, "the function found nobody on frame 0"
    drawn = ui.skeletons()
    assert sorted(sum(1 for p in points if p.label_id in spine and not p.hidden and _inside(ui, p))
                  for points in drawn) == _spine_shown(answer, set(spine.values()))
    assert sum(_spine_shown(answer, set(spine.values()))) > 0, "no spine point drawn"
    ui.shot("2-ai-tools")
    ui.save()

    # Actions → Automatic annotation: every frame annotated, as many skeletons as the function found
    ui.automatic_annotation(AI_TASK, MODEL_NAME, before_run=lambda: ui.shot("2-automatic-annotation-dialog"))
    ui.until(lambda: len(loop.function.invocations) >= calls + 1 + AI_FRAMES, "a call per frame", timeout=180)
    per_frame = [len(_answered(i)) for i in loop.function.invocations[calls + 1:calls + 1 + AI_FRAMES]]
    per_frame[0] += len(answer)  # "Clean previous annotations" is off: frame 0 keeps the AI Tools skeletons
    with cvat_server.make_client() as admin:
        task = admin.tasks.retrieve(task_id)

        def stored() -> list[int]:
            counts = [0] * AI_FRAMES
            for shape in task.get_annotations().shapes:
                counts[shape.frame] += shape.type.value == "skeleton"
            return counts

        ui.until(lambda: stored() == per_frame, f"skeletons {per_frame} per frame in the task", timeout=180)
    assert all(per_frame), f"the function found nobody on some frame: {per_frame}"
    ui.until(lambda: "in progress" not in ui.task_card_text(AI_TASK), "the task card to show the end")
    ui.open_job(task_id, job_id)
    ui.next_frame()
    assert len(ui.skeletons()) == per_frame[1]
    ui.shot("2-automatic-annotation-frame-1")


def _frame_points(cvat_server, job_id: int, frame: int) -> dict[tuple[int, int], tuple[float, float]]:
    """(shape id, sublabel id) -> (x, y) of every skeleton point on one frame, as CVAT stores them."""
    with cvat_server.make_client() as admin:
        shapes = admin.jobs.retrieve(job_id).get_annotations().shapes
    return {(s.id, e.label_id): tuple(e.points) for s in shapes if s.frame == frame for e in s.elements}


def _frame_width(cvat_server, task_id: int) -> int:
    with cvat_server.make_client() as admin:
        return admin.tasks.retrieve(task_id).get_meta().frames[0].width


def _wait_for_run(trainer_url: str, job_id: int, timeout: float = 300) -> dict[str, Any]:
    """The trainer's run for `job_id`, once it has finished."""
    trainer = HttpClient(trainer_url)
    found: list = []
    deadline = time.monotonic() + timeout
    while not found:
        assert time.monotonic() < deadline, f"no run for job {job_id}: {trainer.get('/runs').get_json()}"
        found = [r for r in trainer.get("/runs").get_json()["runs"] if job_id in r["targets"].get("jobs", [])]
        time.sleep(0.5)
    return wait_for_run(trainer, found[0]["id"], timeout=timeout)


def test_a_correction_in_the_ui_trains_promotes_and_serves_the_next_ai_tools_call(
        loop, browser, cvat_server, schema):
    ui, job_id = browser, loop.job_ids[0]
    before = Registry(loop.registry).current().id
    spine = _spine_label_ids(cvat_server, loop.task_id, schema)
    moved_label = next(i for i, n in spine.items() if n == "spine_03")
    stored_before = _frame_points(cvat_server, job_id, 0)

    # drag spine_03 of the first skeleton 80 px down on the page, save, finish the job from the menu
    ui.login(loop.user, loop.password)
    ui.open_job(loop.task_id, job_id)
    scale = ui.image_box()["width"] / _frame_width(cvat_server, loop.task_id)
    ui.drag_point(moved_label, 0, 80)
    ui.save()
    stored_after = _frame_points(cvat_server, job_id, 0)
    changed = {k: (stored_before[k], v) for k, v in stored_after.items() if v != stored_before.get(k)}
    assert [label for _, label in changed] == [moved_label], changed
    (((x0, y0), (x1, y1)),) = changed.values()
    assert abs(x1 - x0) < 2 and abs((y1 - y0) * scale - 80) < 4, (x0, y0, x1, y1, scale)
    ui.shot("3-corrected-spine-point")
    ui.finish_job()
    with cvat_server.make_client() as admin:
        ui.until(lambda: admin.jobs.retrieve(job_id).state == "completed", "the job to be completed")

    # CVAT's webhook → the trainer exports the job, fine-tunes, evaluates and promotes
    run = _wait_for_run(loop.trainer_url, job_id)
    assert run["state"] == "succeeded", run.get("error")
    model = run["result"]["model"]
    assert model["promoted"] and Registry(loop.registry).current().id == model["version"] != before
    # the trainer measured the correction against the sampler's pre-annotations: the dragged point only
    (effort,) = run["result"]["effort"].values()
    spine_effort, body_effort = effort["groups"]["spine"], effort["groups"]["body"]
    assert body_effort["mean_displacement_px"] == 0
    assert abs(spine_effort["mean_displacement_px"] * spine_effort["points"] - (y1 - y0)) < 1, effort
    names = {im["cvat"]["frame"] for split in ("train", "val")
             for im in json.loads((loop.tmp / "data" / "labelled" / split / "annotations.json").read_text())["images"]}
    assert set(loop.round["frames"][:JOB]) <= names

    # the next AI Tools call is answered by the promoted version
    ui.open_job(*_new_task(loop, cvat_server, "after promotion", 1))
    calls = len(loop.function.invocations)
    invocation = _ai_tools_call(ui, loop, calls)
    assert invocation.headers.get("X-CALS-Model-Version") == model["version"], invocation.headers
    ui.shot("3-ai-tools-after-promotion")


def test_the_team_lead_reads_the_loop_report_page(loop, browser):
    """After scenario 4 the trainer has learned round 1's first job: its /report shows the round as
    open (1 of 2 jobs learned), the dragged spine point as the only shift, the plots and the readings."""
    ui, api = browser, HttpClient(loop.trainer_url)
    doc = api.get("/report.json").get_json()
    (first,) = [r for r in doc["rounds"] if r["number"] == 1]
    assert (first["state"], first["jobs_learned"], first["jobs_total"]) == ("open", 1, 2), first
    spine, body = first["effort"]["spine"], first["effort"]["body"]
    assert spine["mean_displacement_px"] > 0 and body["mean_displacement_px"] == 0 == body["moved"], first["effort"]
    ui.driver.set_window_size(1400, 1800)
    ui.driver.get(loop.trainer_url + "/report")
    ui.find("figure svg")
    text = ui.driver.find_element("tag name", "body").text
    assert "Is the loop working for us?" in text and "Traceback" not in text
    assert "1/2 jobs learned" in text and len(ui.all("figure svg")) == 4
    shift = f"{spine['mean_displacement_px']:.1f}"
    assert shift in text and f"{100 * spine['moved_share']:.1f} %" in text, (shift, text[:2000])
    ui.shot("5-loop-report")
