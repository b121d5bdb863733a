"""The CVAT-compatible test server, driven only through the unmodified cvat-sdk.

The same tests run against a real CVAT when CVAT_URL, CVAT_USER and CVAT_PASSWORD are set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from cvat_sdk import Client, models
from cvat_sdk.api_client import ApiClient, Configuration, exceptions
from cvat_sdk.core.exceptions import BackgroundRequestException
from cvat_sdk.core.helpers import make_request_headers
from cvat_sdk.core.proxies.annotations import AnnotationUpdateAction
from cvat_sdk.core.uploading import DataUploader
from PIL import Image

from cals.cvat.project_setup import url_problem
from cals.cvat.version import OLDEST, check_supported, server_version
from cals.schema import load_schema

pytestmark = pytest.mark.filterwarnings("error")
COCO_KP = "COCO Keypoints 1.0"


@pytest.fixture(autouse=True)
def _no_sdk_warnings(cvat_sdk_warnings):
    """Responses must deserialize into cvat-sdk's models without a logged warning."""
    yield
    assert not cvat_sdk_warnings, [r.getMessage() for r in cvat_sdk_warnings]


@pytest.fixture(scope="module")
def spine_label() -> dict:
    return load_schema().cvat_label()


def make_images(folder: Path, names: list[str]) -> list[Path]:
    """Small distinct PNGs, one colour per name, so frames can be told apart."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        Image.new("RGB", (64 + i, 48), (40 * i % 256, 80, 160)).save(path)
        paths.append(path)
    return paths


def frame_names(job_or_task) -> list[str]:
    return [f.name for f in job_or_task.get_meta().frames]


def jobs_frames(task) -> list[list[str]]:
    return [frame_names(j) for j in sorted(task.get_jobs(), key=lambda j: j.start_frame)]


def new_task(client: Client, project, paths: list[Path], **data_params):
    spec = {"name": f"round-{uuid.uuid4().hex[:6]}", "project_id": project.id}
    spec.update(data_params.pop("spec", {}))
    return client.tasks.create_from_data(spec, paths, data_params=data_params)


def coco_document(label: dict, images: list[tuple[str, int, int]], people: dict[str, list[list[float]]]) -> dict:
    """A person_keypoints document: `people` maps an image name to keypoint triplet lists."""
    names = [s["name"] for s in label["sublabels"]]
    image_ids = {name: i for i, (name, _, _) in enumerate(images, 1)}
    anns = [{"id": n, "image_id": image_ids[img], "category_id": 1, "keypoints": kps,
             "num_keypoints": sum(v > 0 for v in kps[2::3]), "bbox": [0, 0, 1, 1], "iscrowd": 0,
             "area": 1, "segmentation": []} for n, (img, kps) in enumerate(
                 ((img, kps) for img, all_kps in people.items() for kps in all_kps), 1)]
    return {"images": [{"id": image_ids[n], "file_name": n, "width": w, "height": h}
                       for n, w, h in images],
            "categories": [{"id": 1, "name": label["name"], "keypoints": names, "skeleton": []}],
            "annotations": anns}


def person(seed: int, count: int) -> list[float]:
    """Keypoint triplets with every visibility: outside (0), occluded (1), visible (2)."""
    out = []
    for i in range(count):
        v = (i + seed) % 3
        out += [0.0, 0.0, 0] if v == 0 else [float(10 + i + seed), float(5 + 2 * i), v]
    return out


# --- server, auth --------------------------------------------------------------------------

def test_client_logs_in_and_names_a_supported_version(cvat_client: Client, cvat_server):
    version = server_version(cvat_client, cvat_server.url)
    assert version >= OLDEST
    assert check_supported(version, cvat_server.url).startswith(f"CVAT {version} at ")
    assert "sessionid" in cvat_client.api_client.cookies
    me, _ = cvat_client.api_client.users_api.retrieve_self()
    assert me.username


def test_wrong_password_fails_clearly(cvat_server):
    with pytest.raises(exceptions.ApiException) as err:
        Client(cvat_server.url, check_server_version=False).login((cvat_server.user, "not-the-password"))
    assert err.value.status == 400  # dj-rest-auth: "Unable to log in with provided credentials."
    assert "Unable to log in" in str(err.value.body)


def test_bad_basic_auth_and_anonymous_requests_are_401(cvat_server):
    config = Configuration(host=cvat_server.url, username=cvat_server.user, password="wrong")
    with ApiClient(config) as api, pytest.raises(exceptions.UnauthorizedException):
        api.users_api.retrieve_self()
    with ApiClient(Configuration(host=cvat_server.url)) as api, \
            pytest.raises(exceptions.UnauthorizedException):
        api.projects_api.list()


def test_unknown_endpoints_and_malformed_bodies(cvat_client: Client):
    rest, api = cvat_client.api_client.rest_client, cvat_client.api_client
    base = cvat_client.api_map.host
    headers = make_request_headers(api)
    with pytest.raises(exceptions.NotFoundException):
        rest.GET(base + "/api/no-such-thing", headers=headers)
    with pytest.raises(exceptions.NotFoundException):
        cvat_client.projects.retrieve(10**8)
    with pytest.raises(exceptions.ApiException) as err:
        rest.request("PUT", base + "/api/server/about", headers=headers, body={})
    assert err.value.status == 405
    with pytest.raises(exceptions.ApiException) as err:
        rest.POST(base + "/api/projects", headers={**headers, "Content-Type": "application/json"},
                  body="{not json")
    assert err.value.status in (400, 500)  # CVAT 2.23 answers 500 (its JSON parser's error is not caught)
    assert cvat_client.users.retrieve_current_user().username  # and it keeps answering


# --- projects, tasks, jobs -------------------------------------------------------------------

def test_project_has_the_spine_skeleton(project, spine_label: dict):
    (label,) = project.get_labels()
    assert (label.name, label.type) == ("person", "skeleton")
    # CVAT 2.23 lists sublabels in no fixed order (a fresh database gave spine_01 and hip first), so
    # CALS maps points by name, never by position.
    assert sorted(s.name for s in label.sublabels) == sorted(s["name"] for s in spine_label["sublabels"])
    assert all(s.type == "points" for s in label.sublabels)
    assert f'data-label-id="{label.sublabels[0].id}"' in label.svg


def test_job_file_mapping_fixes_frame_order_and_jobs(cvat_client, project, tmp_path):
    names = [f"img_{i:02d}.png" for i in range(7)]
    paths = make_images(tmp_path, names)
    mapping = [["img_05.png", "img_01.png", "img_03.png"], ["img_06.png"], ["img_00.png", "img_04.png", "img_02.png"]]
    task = new_task(cvat_client, project, paths, job_file_mapping=mapping)
    assert task.size == 7
    assert frame_names(task) == [n for job in mapping for n in job]
    assert jobs_frames(task) == mapping
    job = sorted(task.get_jobs(), key=lambda j: j.start_frame)[2]
    # Job.get_frame leaves the SDK's temporary download file open (an SDK quirk), so read raw.
    _, response = job.api.retrieve_data(job.id, number=job.start_frame + 1, quality="original",
                                        type="frame", _parse_response=False)
    assert response.read() == paths[names.index("img_04.png")].read_bytes()


def test_job_file_mapping_with_sorting_method_fails_like_cvat(cvat_client, project, tmp_path):
    paths = make_images(tmp_path, ["a.png", "b.png"])
    with pytest.raises(BackgroundRequestException, match="job_file_mapping cannot be used with sorting_method"):
        new_task(cvat_client, project, paths, sorting_method="predefined",
                 job_file_mapping=[["b.png"], ["a.png"]])


@pytest.mark.parametrize("method", ["lexicographical", "natural", "predefined", "random"])
def test_sorting_methods(cvat_client, project, tmp_path, method):
    names = ["img_10.png", "img_2.png", "img_1.png", "img_03.png"]
    task = new_task(cvat_client, project, make_images(tmp_path, names), sorting_method=method)
    expected = {"lexicographical": sorted(names),
                "natural": ["img_1.png", "img_2.png", "img_03.png", "img_10.png"],
                "predefined": names}.get(method)
    got = frame_names(task)
    assert got == expected if expected else sorted(got) == sorted(names)


def test_segment_size_splits_jobs_and_download_frames(cvat_client, project, tmp_path):
    names = [f"f{i}.png" for i in range(5)]
    task = new_task(cvat_client, project, make_images(tmp_path, names), spec={"segment_size": 2})
    assert jobs_frames(task) == [names[0:2], names[2:4], names[4:]]
    task.download_frames([0, 4], outdir=tmp_path / "out", quality="original")
    with Image.open(tmp_path / "out" / "frame_000004.png") as image:
        assert image.size == (68, 48)


def test_tus_upload_of_task_data(cvat_client, project, tmp_path):
    """Files over the bulk-request size go through TUS chunks, as big images do in the SDK."""
    names = ["z.png", "y.png", "x.png"]
    task = cvat_client.tasks.create({"name": "tus", "project_id": project.id})
    url = cvat_client.api_map.make_endpoint_url(task.api.create_data_endpoint.path, kwsub={"id": task.id})
    response = DataUploader(cvat_client, max_request_size=1).upload_files(
        url, make_images(tmp_path, names), image_quality=70, sorting_method="predefined")
    cvat_client.wait_for_completion(json.loads(response.data)["rq_id"])
    assert frame_names(task.fetch()) == names


def test_jobs_list_filters_and_update(cvat_client, project, tmp_path):
    task = new_task(cvat_client, project, make_images(tmp_path, ["a.png", "b.png", "c.png"]),
                    job_file_mapping=[["a.png"], ["b.png"], ["c.png"]])
    jobs = sorted(cvat_client.jobs.list(task_id=task.id), key=lambda j: j.start_frame)
    assert len(jobs) == 3 and all(j.state == "new" and j.stage == "annotation" for j in jobs)
    me, _ = cvat_client.api_client.users_api.retrieve_self()
    jobs[1].update({"assignee": me.id, "stage": "acceptance", "state": "completed"})
    assert (jobs[1].stage, jobs[1].state, jobs[1].assignee.username) == ("acceptance", "completed", me.username)
    assert [j.id for j in cvat_client.jobs.list(task_id=task.id, state="completed")] == [jobs[1].id]
    assert [j.id for j in cvat_client.jobs.list(task_id=task.id, stage="acceptance")] == [jobs[1].id]
    assert [j.id for j in cvat_client.jobs.list(task_id=task.id, assignee=me.username)] == [jobs[1].id]
    assert len(cvat_client.jobs.list(task_id=task.id, state="new")) == 2
    with pytest.raises(exceptions.ApiException) as err:  # the SDK's model would refuse it itself
        cvat_client.api_client.rest_client.PATCH(
            jobs[0].url, headers=make_request_headers(cvat_client.api_client), body={"state": "done-ish"})
    assert err.value.status == 400 and "state" in str(err.value.body)


# --- annotations, COCO keypoints -----------------------------------------------------------------

def test_skeleton_annotations_read_write(cvat_client, project, tmp_path):
    task = new_task(cvat_client, project, make_images(tmp_path, ["a.png", "b.png"]),
                    job_file_mapping=[["a.png"], ["b.png"]])
    (label,) = task.get_labels()
    job = sorted(task.get_jobs(), key=lambda j: j.start_frame)[1]
    elements = [models.SubLabeledShapeRequest(type="points", frame=1, label_id=s.id, points=[1.0 + i, 2.0],
                                              outside=i == 0, occluded=i == 1)
                for i, s in enumerate(label.sublabels)]
    job.set_annotations(models.LabeledDataRequest(shapes=[models.LabeledShapeRequest(
        type="skeleton", frame=1, label_id=label.id, points=[], elements=elements)]))
    (shape,) = job.get_annotations().shapes
    assert shape.type.value == "skeleton" and len(shape.elements) == len(label.sublabels)
    by_label = {e.label_id: e for e in shape.elements}  # CVAT does not promise the elements' order
    first = [by_label[s.id] for s in label.sublabels[:3]]
    assert [e.outside for e in first] == [True, False, False]
    assert len(task.get_annotations().shapes) == 1
    assert sorted(task.get_jobs(), key=lambda j: j.start_frame)[0].get_annotations().shapes == []
    job.remove_annotations()
    assert task.get_annotations().shapes == []


def _exported(job, tmp_path: Path, include_images: bool) -> zipfile.ZipFile:
    path = tmp_path / f"export-{job.id}-{include_images}.zip"
    job.export_dataset(COCO_KP, path, include_images=include_images)
    return zipfile.ZipFile(path)


def test_import_coco_keypoints_then_export_job_gives_same_points(cvat_client, project, spine_label, tmp_path):
    names = ["p0.png", "p1.png", "p2.png", "p3.png"]
    paths = make_images(tmp_path / "img", names)
    mapping = [["p2.png", "p0.png"], ["p3.png", "p1.png"]]
    task = new_task(cvat_client, project, paths, job_file_mapping=mapping)
    count = len(spine_label["sublabels"])
    people = {"p0.png": [person(0, count)], "p1.png": [person(1, count), person(2, count)],
              "p3.png": [person(3, count)]}
    sizes = [(n, 64 + i, 48) for i, n in enumerate(names)]
    source = tmp_path / "person_keypoints.json"
    source.write_text(json.dumps(coco_document(spine_label, sizes, people)))
    task.import_annotations(COCO_KP, source)

    job = sorted(task.get_jobs(), key=lambda j: j.start_frame)[1]
    with _exported(job, tmp_path, include_images=False) as archive:
        doc = json.loads(archive.read("annotations/person_keypoints_default.json"))
        assert not [n for n in archive.namelist() if n.startswith("images/")]
    assert [i["file_name"] for i in doc["images"]] == mapping[1]
    (category,) = doc["categories"]
    assert category["name"] == "person"
    wanted = [s["name"] for s in spine_label["sublabels"]]
    assert sorted(category["keypoints"]) == sorted(wanted)  # in CVAT's sublabel order, not the spec's
    column = [category["keypoints"].index(n) for n in wanted]
    by_image = {i["id"]: i["file_name"] for i in doc["images"]}
    got = {}
    for ann in doc["annotations"]:
        triples = list(zip(*[iter(ann["keypoints"])] * 3))
        got.setdefault(by_image[ann["image_id"]], []).append([v for c in column for v in triples[c]])
        visible = [(x, y) for x, y, v in zip(*[iter(ann["keypoints"])] * 3) if v]
        xs, ys = [p[0] for p in visible], [p[1] for p in visible]
        assert ann["bbox"] == [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        assert ann["num_keypoints"] == len(visible)
    assert sorted(got["p1.png"]) == sorted(people["p1.png"]) and got["p3.png"] == people["p3.png"]
    with _exported(job, tmp_path, include_images=True) as archive:
        assert archive.read("images/default/p3.png") == paths[3].read_bytes()


def test_a_task_without_data_has_no_annotations_to_read(cvat_client, project):
    """A round killed before its upload leaves such a task: CVAT refuses to read its annotations."""
    task = cvat_client.tasks.create(models.TaskWriteRequest(name="no data yet", project_id=project.id))
    with pytest.raises(exceptions.ApiException) as err:
        task.get_annotations()
    assert err.value.status == 400
    assert cvat_client.jobs.list(task_id=task.id) == []


def test_import_into_a_job_touches_only_its_frames(cvat_client, project, spine_label, tmp_path):
    names = ["q0.png", "q1.png"]
    paths = make_images(tmp_path, names)
    task = new_task(cvat_client, project, paths, job_file_mapping=[["q0.png"], ["q1.png"]])
    count = len(spine_label["sublabels"])
    both = tmp_path / "both.json"
    both.write_text(json.dumps(coco_document(
        spine_label, [(n, 64 + i, 48) for i, n in enumerate(names)],
        {"q0.png": [person(0, count)], "q1.png": [person(1, count)]})))
    own = tmp_path / "own.json"
    own.write_text(json.dumps(coco_document(spine_label, [("q1.png", 65, 48)], {"q1.png": [person(1, count)]})))
    job = sorted(task.get_jobs(), key=lambda j: j.start_frame)[1]
    with pytest.raises(BackgroundRequestException, match="q0"):  # q0.png is a frame of the other job
        job.import_annotations(COCO_KP, both)
    assert task.get_annotations().shapes == []
    job.import_annotations(COCO_KP, own)
    assert [s.frame for s in task.get_annotations().shapes] == [1]


def test_bad_uploads_fail_clearly(cvat_client, project, spine_label, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(BackgroundRequestException, match="No media data found"):
        new_task(cvat_client, project, [text])
    paths = make_images(tmp_path, ["a.png"])
    with pytest.raises(BackgroundRequestException, match="missing.png"):
        new_task(cvat_client, project, paths, job_file_mapping=[["a.png", "missing.png"]])
    with pytest.raises(exceptions.ApiException) as err:
        new_task(cvat_client, project, paths, sorting_method="alphabetical")
    assert err.value.status == 400 and "sorting_method" in str(err.value.body)

    task = new_task(cvat_client, project, paths)
    bad_json = tmp_path / "broken.json"
    bad_json.write_text("{ this is not json")
    with pytest.raises(BackgroundRequestException):  # the wording differs between CVAT versions
        task.import_annotations(COCO_KP, bad_json)
    no_segmentation = coco_document(spine_label, [("a.png", 8, 8)], {"a.png": [person(0, len(spine_label["sublabels"]))]})
    del no_segmentation["annotations"][0]["segmentation"]
    source = tmp_path / "no_segmentation.json"
    source.write_text(json.dumps(no_segmentation))
    with pytest.raises(BackgroundRequestException, match="Missing annotation field 'segmentation'"):
        task.import_annotations(COCO_KP, source)
    assert task.get_annotations().shapes == []
    unknown_image = tmp_path / "unknown.json"
    unknown_image.write_text(json.dumps(coco_document(spine_label, [("zzz.png", 8, 8)], {})))
    with pytest.raises(BackgroundRequestException, match="zzz"):
        task.import_annotations(COCO_KP, unknown_image)
    with pytest.raises(exceptions.ApiException) as err:
        task.export_dataset("No Such Format 9.9", tmp_path / "x.zip")
    assert err.value.status == 400


# --- webhooks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "http://cals-trainer:8010/webhooks/cvat", "http://trainer.cals.internal:8010/webhooks/cvat",
    "http://127.0.0.1:8010/webhooks/cvat", "http://localhost:8010/webhooks/cvat",
    "http://host.docker.internal:8010/webhooks/cvat", "http://trainer.cals.8010/webhooks/cvat"])
def test_webhook_targets_cvat_takes_are_the_ones_setup_takes(cvat_client, project, target):
    """CVAT validates target_url as a Django URLField; setup-project predicts its answer (url_problem)."""
    request = models.WebhookWriteRequest(target_url=target, type=models.WebhookType("project"),
                                         events=[models.EventsEnum("update:job")], project_id=project.id)
    try:
        created, _ = cvat_client.api_client.webhooks_api.create(request)
    except exceptions.ApiException as err:
        assert err.status == 400 and "target_url" in str(err.body)
        assert url_problem(target) is not None
        return
    cvat_client.api_client.webhooks_api.destroy(created.id)
    assert url_problem(target) is None


def test_completed_job_sends_signed_webhook(cvat_client, project, tmp_path, webhook_receiver):
    secret = "s3cret-" + uuid.uuid4().hex
    hook, _ = cvat_client.api_client.webhooks_api.create(models.WebhookWriteRequest(
        target_url=webhook_receiver.url, type="project", project_id=project.id, secret=secret,
        events=["update:job"], content_type="application/json", enable_ssl=False))
    task = new_task(cvat_client, project, make_images(tmp_path, ["a.png", "b.png"]),
                    job_file_mapping=[["a.png"], ["b.png"]])
    job = sorted(task.get_jobs(), key=lambda j: j.start_frame)[0]
    job.update({"stage": "acceptance", "state": "completed"})

    delivery = webhook_receiver.wait_for_job("completed")
    expected = "sha256=" + hmac.new(secret.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert delivery.headers["X-Signature-256"] == expected
    payload = delivery.json
    assert payload["event"] == "update:job" and payload["webhook_id"] == hook.id
    assert payload["job"]["id"] == job.id and payload["job"]["state"] == "completed"
    assert payload["before_update"]["stage"] == "annotation"
    assert payload["before_update"]["state"] == "new"
    assert payload["sender"]["username"] == cvat_client.api_client.users_api.retrieve_self()[0].username


def test_more_sdk_calls_deserialize_cleanly(cvat_client, project, tmp_path):
    """Breadth: calls the trainer and sampler may make, read back through cvat-sdk's models."""
    task = new_task(cvat_client, project, make_images(tmp_path, ["a.png", "b.png"]))
    (label,) = task.get_labels()
    assert cvat_client.api_client.labels_api.retrieve(label.id)[0].name == "person"
    assert [t.id for t in project.get_tasks()] == [task.id]
    elements = [models.SubLabeledShapeRequest(type="points", frame=0, label_id=s.id, points=[3.0, 4.0])
                for s in label.sublabels]
    shape = models.LabeledShapeRequest(type="skeleton", frame=0, label_id=label.id, elements=elements)
    task.update_annotations(models.PatchedLabeledDataRequest(shapes=[shape]), action=AnnotationUpdateAction.CREATE)
    (stored,) = task.get_annotations().shapes
    task.remove_annotations(ids=[stored.id])
    assert task.get_annotations().shapes == []
    # cvat-sdk 2.80's event enum lacks some of 2.23's events (create:comment): read this list as JSON
    events = json.loads(cvat_client.api_client.webhooks_api.retrieve_events(type="project",
                                                                          _parse_response=False)[1].data)
    assert "update:job" in [e["key"] if isinstance(e, dict) else e for e in events["events"]]  # 2.23: names
    out = project.export_dataset(COCO_KP, tmp_path / "project.zip", include_images=False)
    with zipfile.ZipFile(out) as archive:
        doc = json.loads(archive.read("annotations/person_keypoints_default.json"))
    assert sorted(i["file_name"] for i in doc["images"]) == ["a.png", "b.png"]
    assert cvat_client.api_client.requests_api.list()[0].count >= 1
    assert task.get_preview().read(2) == b"\xff\xd8"  # a JPEG


# --- command line ----------------------------------------------------------------------------------

def test_module_starts_a_server(tmp_path, cvat_server):
    if cvat_server.real:
        pytest.skip("exercises the local test server only")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tests.cvat_server", "--port", str(port),
                             "--user", "u", "--password", "p"], cwd=Path(__file__).parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}")
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        client.login(("u", "p"))
        assert client.projects.list() == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)
