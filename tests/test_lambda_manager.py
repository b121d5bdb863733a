"""Stock CVAT's lambda manager driving the spine-pose Nuclio function, without Nuclio.

CVAT reaches Nuclio through its dashboard at CVAT_NUCLIO_HOST:CVAT_NUCLIO_PORT (invoke method
`dashboard`); tests/nuclio_dashboard.py stands in for it and runs the real handler in-process on
the model trained by the session fixture `trained`. The CVAT must be real (the test server has
no lambda manager) and started with CVAT_NUCLIO_HOST=127.0.0.1, CVAT_NUCLIO_PORT (default 8070)
and CVAT_NUCLIO_INVOKE_METHOD=dashboard, on this machine.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from cals.registry import Registry
from tests.nuclio_dashboard import NuclioDashboard, NuclioFunction
from tests.test_function_helpers import DETECTOR, FUNCTION_DIR, copy_version

FUNCTION = "cals-spine-pose"
AUTH = ["accessTokenAuth", "basicAuth", "csrfAuth", "csrfHeaderAuth", "sessionAuth", "tokenAuth"]
FRAMES = 3
# The function's settings besides the paths: the deployed defaults (function.yaml: point threshold 0, so a
# point is outside only off the image; points to check below 0.6).
FUNCTION_ENV = {"CALS_DEVICE": "cpu", "CALS_POINT_THRESHOLD": "0", "CALS_CHECK_BELOW": "0.6"}
UNSET_ENV = ("CALS_INIT_CHECKPOINT", "CALS_MAX_PIXELS")


def _api(client, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(status, JSON) of one CVAT REST call with the client's login; raw, so that the SDK's
    models (newer than the server) neither reshape the request nor reject the answer."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    _, response = client.api_client.call_api(path, method, header_params=headers, body=body,
                                              auth_settings=AUTH, _parse_response=False,
                                              _check_status=False)
    data = response.data
    return response.status, json.loads(data) if data else None


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def dashboard_unavailable() -> str | None:
    """Why the Nuclio-dashboard stand-in cannot serve the function where CVAT looks, or None."""
    if not DETECTOR.is_file():
        return "../shared detector not present"
    port = int(os.environ.get("CVAT_NUCLIO_PORT", 8070))
    if not _port_free("127.0.0.1", port):
        return (f"127.0.0.1:{port} is taken; the stand-in Nuclio dashboard must listen where "
                "CVAT's CVAT_NUCLIO_PORT points")
    return None


@contextmanager
def function_dashboard(registry_root: Path) -> Iterator[NuclioDashboard]:
    """The real function, serving `registry_root`'s current model, behind the stand-in dashboard on
    CVAT_NUCLIO_PORT (default 8070)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALS_REGISTRY", str(registry_root))
        mp.setenv("CALS_DETECTOR", str(DETECTOR))
        for name in UNSET_ENV:
            mp.delenv(name, raising=False)
        for name, value in FUNCTION_ENV.items():
            mp.setenv(name, value)
        function = NuclioFunction.from_yaml(FUNCTION_DIR / "function.yaml")
        port = int(os.environ.get("CVAT_NUCLIO_PORT", 8070))
        with NuclioDashboard([function], host="127.0.0.1", port=port) as served:
            yield served


@pytest.fixture(scope="module")
def dashboard(cvat_server, request, tmp_path_factory) -> Iterator[NuclioDashboard]:
    """The stand-in Nuclio dashboard where the real CVAT looks for it, serving the trained model."""
    if not cvat_server.real:
        pytest.skip("the CVAT test server has no lambda manager; runs against a real CVAT "
                    "(CVAT_URL, CVAT_USER, CVAT_PASSWORD)")
    reason = dashboard_unavailable()
    if reason:
        pytest.skip(reason)
    _, version = request.getfixturevalue("trained")
    registry = Registry(tmp_path_factory.mktemp("lambda-registry"))
    registry.promote(copy_version(version, registry).id)
    with function_dashboard(registry.root) as served:
        yield served


@pytest.fixture
def function(dashboard) -> NuclioFunction:
    """The deployed function, its call log emptied for this test."""
    deployed = dashboard.functions[FUNCTION]
    deployed.invocations.clear()
    return deployed


@pytest.fixture
def task(cvat_client, project, synthetic, tmp_path):
    """A task of FRAMES generated images (no annotations) in the project with the schema's skeleton."""
    coco = json.loads((synthetic / "val" / "annotations.json").read_text())
    paths = []
    for image in coco["images"][:FRAMES]:
        paths.append(tmp_path / image["file_name"])
        shutil.copy(synthetic / "val" / "images" / image["file_name"], paths[-1])
    return cvat_client.tasks.create_from_data({"name": "lambda-auto", "project_id": project.id}, paths,
                                              data_params={"sorting_method": "predefined"})


def _mapping(schema) -> dict[str, Any]:
    """Model label -> task label, skeleton points and attributes included, in the shape CVAT's UI sends it
    (its labels mapper pairs same-named labels, points and attributes: computeAttributesAutoMapping)."""
    label = schema.cvat_label()
    same = lambda spec: {a["name"]: a["name"] for a in spec["attributes"]}  # noqa: E731
    return {schema.label: {"name": schema.label, "attributes": same(label),
                           "sublabels": {s["name"]: {"name": s["name"], "attributes": same(s)}
                                         for s in label["sublabels"]}}}


def _named(attributes: list[dict[str, Any]]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in attributes}


def _stored_attributes(attributes, label) -> dict[str, str]:
    """A stored shape's attribute values by name (CVAT stores spec ids)."""
    names = {a.id: a.name for a in label.attributes}
    return {names[a.spec_id]: a.value for a in attributes}


def _frame_sizes(task) -> list[tuple[int, int]]:
    return [(f.width, f.height) for f in task.get_meta().frames]


def _visible(shape: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Point name -> (x, y) of the elements not marked outside, in a function-style shape."""
    return {e["label"]: tuple(e["points"]) for e in shape["elements"] if not e["outside"]}


def _assert_inside(points: dict[str, tuple[float, float]], size: tuple[int, int]) -> None:
    width, height = size
    for name, (x, y) in points.items():
        assert -1 <= x <= width + 1 and -1 <= y <= height + 1, (name, x, y, size)


def _answered(invocation) -> list[dict[str, Any]]:
    """The skeletons CVAT keeps from one function answer (it drops those with every point outside)."""
    assert invocation.status == 200, invocation.answer[:500]
    return [s for s in invocation.json if any(not e["outside"] for e in s["elements"])]


def test_cvat_lists_the_function_with_the_schema_skeleton(dashboard, cvat_client, schema):
    status, functions = _api(cvat_client, "GET", "/api/lambda/functions")
    assert status == 200, functions
    listed = {f["id"]: f for f in functions}
    assert FUNCTION in listed, sorted(listed)
    entry = listed[FUNCTION]
    assert entry["kind"] == "detector"
    assert entry["name"] == "CALS spine pose" and entry["description"]
    (label,) = entry["labels_v2"]
    assert label["name"] == schema.label and label["type"] == "skeleton"
    assert [s["name"] for s in label["sublabels"]] == schema.names
    assert all(s["type"] == "points" for s in label["sublabels"])
    assert 'data-type="element node"' in label["svg"]

    status, single = _api(cvat_client, "GET", f"/api/lambda/functions/{FUNCTION}")
    assert status == 200 and single["id"] == FUNCTION and single["labels_v2"] == entry["labels_v2"]


def _wait(client, request_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, state = _api(client, "GET", f"/api/lambda/requests/{request_id}")
        assert status == 200, state
        if state["status"] in ("finished", "failed"):
            return state
        assert time.monotonic() < deadline, f"request {request_id} still {state['status']}"
        time.sleep(0.5)


def _add_manual_skeleton(client, task) -> None:
    """One hand-made skeleton on frame 0, as an annotator would have left it."""
    (label,) = task.get_labels()
    elements = [{"type": "points", "label_id": s.id, "frame": 0, "points": [5.0, 5.0 + i],
                 "outside": False, "occluded": False, "attributes": [], "group": 0, "source": "manual",
                 "z_order": 0} for i, s in enumerate(label.sublabels)]
    shape = {"type": "skeleton", "label_id": label.id, "frame": 0, "points": [], "elements": elements,
             "outside": False, "occluded": False, "attributes": [], "group": 0, "source": "manual",
             "z_order": 0, "rotation": 0}
    status, body = _api(client, "PATCH", f"/api/tasks/{task.id}/annotations?action=create",
                        {"version": 0, "tags": [], "shapes": [shape], "tracks": []})
    assert status == 200, body
    assert [s.source for s in task.get_annotations().shapes] == ["manual"]


def test_automatic_annotation_of_a_task_stores_skeletons(function, cvat_client, task, schema):
    _add_manual_skeleton(cvat_client, task)  # "Clean old annotations" must remove it
    status, started = _api(cvat_client, "POST", "/api/lambda/requests", {
        "function": FUNCTION, "task": task.id, "cleanup": True, "conv_mask_to_poly": False,
        "mapping": _mapping(schema)})
    assert status == 200, started
    state = _wait(cvat_client, started["id"])
    assert state["status"] == "finished", state.get("exc_info")

    # CVAT called the function once per frame, in frame order, with the frame as base64 image.
    assert len(function.invocations) == FRAMES
    assert all(set(i.body) == {"image"} for i in function.invocations)
    answers = [_answered(i) for i in function.invocations]

    sizes = _frame_sizes(task)
    labels = {label.id: label for label in task.get_labels()}
    points = {s.id: s for label in labels.values() for s in label.sublabels}
    stored: dict[int, list[dict[str, Any]]] = {}
    for shape in task.get_annotations().shapes:
        assert labels[shape.label_id].name == schema.label and shape.type.value == "skeleton"
        assert shape.source == "auto"  # the manual skeleton is gone (cleanup: true)
        elements = [{"label": points[e.label_id].name, "points": e.points, "outside": e.outside,
                     "attributes": _stored_attributes(e.attributes, points[e.label_id])} for e in shape.elements]
        assert sorted(e["label"] for e in elements) == sorted(schema.names)
        stored.setdefault(shape.frame, []).append(
            {"elements": elements, "attributes": _stored_attributes(shape.attributes, labels[shape.label_id])})

    assert all(answers), f"the function found nobody on some frame: {[len(a) for a in answers]}"
    for frame, answer in enumerate(answers):
        kept = stored.get(frame, [])
        assert len(kept) == len(answer), (frame, len(kept), len(answer))
        # CVAT stores what the function answered: same visible points, same place.
        want = sorted((sorted(_visible(s).items()) for s in answer))
        got = sorted((sorted(_visible(s).items()) for s in kept))
        for w, g in zip(want, got):
            assert [n for n, _ in w] == [n for n, _ in g]
            for (_, wp), (_, gp) in zip(w, g):
                assert wp == pytest.approx(gp, abs=1e-2)
        for shape in kept:
            _assert_inside(_visible(shape), sizes[frame])
        # the points to check: CVAT stored every attribute the function sent, on the skeleton and its points
        want = sorted(json.dumps([_named(s["attributes"]), {e["label"]: _named(e["attributes"]) for e in s["elements"]}],
                                 sort_keys=True) for s in answer)
        got = sorted(json.dumps([s["attributes"], {e["label"]: e["attributes"] for e in s["elements"]}], sort_keys=True)
                     for s in kept)
        assert got == want
        got = [json.loads(g) for g in got]
        assert all(set(a) == {"check", "spine_confidence"} for a, _ in got)
        assert all(set(p) == {"check", "confidence"} for _, e in got for p in e.values())

    spine = {schema.names[i] for i in schema.groups["spine"]}
    seen = {n for shapes in stored.values() for s in shapes for n in _visible(s)}
    assert spine & seen, f"no spine point visible in any stored skeleton: {sorted(seen)}"


def test_one_frame_as_ai_tools_detectors(function, cvat_client, task, schema):
    (job,) = task.get_jobs()
    status, shapes = _api(cvat_client, "POST", f"/api/lambda/functions/{FUNCTION}", {
        "task": task.id, "job": job.id, "frame": 1, "mapping": _mapping(schema),
        "cleanup": False, "conv_mask_to_poly": False})
    assert status == 200, shapes
    (invocation,) = function.invocations
    assert shapes, "no skeleton came back"
    assert len(shapes) == len(invocation.json)
    size = _frame_sizes(task)[1]
    for shape in shapes:
        assert shape["label"] == schema.label and shape["type"] == "skeleton"
        assert [e["label"] for e in shape["elements"]] == schema.names
        _assert_inside(_visible(shape), size)
    assert [_visible(s) for s in shapes] == [_visible(s) for s in invocation.json]
    # the points to check come back as CVAT's UI receives them: all kept, on the skeleton and on each point
    assert [(_named(s["attributes"]), [_named(e["attributes"]) for e in s["elements"]]) for s in shapes] == \
        [(_named(s["attributes"]), [_named(e["attributes"]) for e in s["elements"]]) for s in invocation.json]
    assert all(set(_named(s["attributes"])) == {"check", "spine_confidence"} for s in shapes)
    # AI Tools only shows the shapes; nothing is stored until the annotator saves.
    assert not task.get_annotations().shapes


ECHO_YAML = """\
metadata:
  name: echo
  annotations:
    name: Echo
    type: detector
    spec: '[{"name": "thing", "type": "rectangle"}]'
spec:
  description: answers what it got
  handler: main:handler
"""

ECHO_MAIN = '''\
import json


def init_context(context):
    context.user_data.inits = getattr(context.user_data, "inits", 0) + 1


def handler(context, event):
    status = 418 if isinstance(event.body, dict) and event.body.get("fail") else 200
    return context.Response(body=json.dumps({"got": event.body, "inits": context.user_data.inits}),
                            content_type="application/json", status_code=status)
'''


def _http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, JSON or None) of one plain HTTP call, as CVAT's LambdaGateway makes them."""
    import urllib3

    response = urllib3.request(method, url, json=body, headers=headers, timeout=10, retries=False)
    try:
        return response.status, response.json()
    except ValueError:
        return response.status, None


def test_the_stand_in_dashboard_answers_as_nuclio_does(tmp_path):
    """The stand-in itself, without CVAT: the calls CVAT's LambdaGateway makes, and their answers."""
    (tmp_path / "function.yaml").write_text(ECHO_YAML)
    (tmp_path / "main.py").write_text(ECHO_MAIN)
    cvat = {"x-nuclio-project-name": "cvat", "x-nuclio-function-namespace": "nuclio"}
    with NuclioDashboard([NuclioFunction.from_yaml(tmp_path / "function.yaml")]) as dashboard:
        status, listed = _http("GET", f"{dashboard.url}/api/functions", headers=cvat)
        assert status == 200 and list(listed) == ["echo"]
        echo = listed["echo"]
        assert echo["metadata"]["annotations"]["type"] == "detector"
        assert echo["spec"]["description"] == "answers what it got"
        assert echo["status"]["state"] == "ready" and echo["status"]["httpPort"] > 0
        assert _http("GET", f"{dashboard.url}/api/functions", headers={"x-nuclio-project-name": "x"}) == (200, {})
        assert _http("GET", f"{dashboard.url}/api/functions/echo", headers=cvat) == (200, echo)
        assert _http("GET", f"{dashboard.url}/api/functions/nope", headers=cvat)[0] == 404

        invoke = f"{dashboard.url}/api/function_invocations"
        named = {**cvat, "x-nuclio-function-name": "echo"}
        assert _http("POST", invoke, {"image": "aGk="}, named) == (200, {"got": {"image": "aGk="}, "inits": 1})
        assert _http("POST", invoke, {"fail": True}, named)[0] == 418  # the function's status, unchanged
        direct = f"http://127.0.0.1:{echo['status']['httpPort']}/"
        assert _http("POST", direct, {"x": 1}) == (200, {"got": {"x": 1}, "inits": 1})  # one init_context
        assert _http("POST", invoke, {}, {"x-nuclio-function-name": "nope"})[0] == 404
        assert len(dashboard.functions["echo"].invocations) == 3
