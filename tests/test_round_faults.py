"""A round killed while being opened (after its CVAT task exists, before its record) leaves no orphan:
the next `open_round` deletes the task when nobody touched it and opens the round with the same
number, and stops with a CalsError naming the task when a person may have worked in it."""
import json

import pytest
from cvat_sdk.api_client import models

from cals.sampling import rounds as rounds_module
from cals.cvat.round_orphans import MARKER
from cals.sampling.rounds import RoundSpec, open_round, round_tasks
from cals.errors import CalsError
from cals.data.pool import LocalPool
from cals.sampling.scoring import Scorer
from cals.sampling.strategies import create



@pytest.fixture(scope="module")
def blurred_pool(tmp_path_factory):
    """6 generated frames: small, so the module's model trains in seconds."""
    from cals.synth import generate_dataset

    root = tmp_path_factory.mktemp("round-faults-pool")
    generate_dataset(root, 6, seed=31, progress=False, workers=1)
    return root


@pytest.fixture(scope="module")
def model(blurred_pool, tmp_path_factory):
    """A model of a few iterations: the rounds only need its predictions, not their quality."""
    from cals.model.predict import Predictor
    from cals.model.train import train
    from cals.registry import Registry

    version = train(blurred_pool, Registry(tmp_path_factory.mktemp("round-faults-registry")), iters=5,
                    progress=False)
    return Predictor(version.path, version_id=version.id)


class Killed(BaseException):
    """Stands for SIGKILL: raised where the process dies, with the rollback switched off."""


def kill_at(monkeypatch, name: str, *, when=lambda *args, **kwargs: True) -> None:
    """Make `cals.sampling.rounds.<name>` kill the round (when `when(args)`), leaving CVAT as a kill would."""
    real = getattr(rounds_module, name)

    def dying(*args, **kwargs):
        if when(*args, **kwargs):
            raise Killed(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(rounds_module, name, dying)
    monkeypatch.setattr(rounds_module, "_delete_task", lambda *args, **kwargs: None)


def opener(cvat_client, project, model, blurred_pool, schema, tmp_path):
    spec, pool = RoundSpec(project.id, size=3, job_size=2), LocalPool(blurred_pool, schema)
    strategy = create("least_confidence", schema=schema)
    return lambda: open_round(cvat_client, spec, pool, Scorer(model), strategy, data_dir=tmp_path, progress=False)


def killed_round(cvat_client, project, open_again, monkeypatch, **kill) -> object:
    """Open round 1 with a kill injected; returns the orphaned task."""
    with monkeypatch.context() as m:
        kill_at(m, **kill)
        with pytest.raises(Killed):
            open_again()
    (task,) = round_tasks(cvat_client, project.id).values()
    return task


@pytest.mark.parametrize("kill", [
    {"name": "_write_record"},  # everything in CVAT, pre-annotations imported, no record
    {"name": "write_marker", "when": lambda folder, data: data["task_id"] is not None},  # task without data
])
def test_an_untouched_orphan_is_deleted_and_the_round_opened_with_its_number(
        cvat_client, project, model, blurred_pool, schema, tmp_path, monkeypatch, kill):
    open_again = opener(cvat_client, project, model, blurred_pool, schema, tmp_path)
    orphan = killed_round(cvat_client, project, open_again, monkeypatch, **kill)
    folder = tmp_path / "sampler" / "rounds" / f"project-{project.id}" / "round-1"
    assert (folder / MARKER).is_file() and not (folder / "round.json").exists()

    result = open_again()
    assert result.created and result.number == 1 and result.task_id != orphan.id
    assert {n: t.id for n, t in round_tasks(cvat_client, project.id).items()} == {1: result.task_id}
    assert json.loads((folder / "round.json").read_text())["task_id"] == result.task_id
    assert not list(folder.glob("opening*"))
    assert len(result.frames) == 3  # the orphan's frames were not counted as used


@pytest.mark.parametrize("work", ["state", "annotations", "cleared"])
def test_an_orphan_a_person_touched_is_kept_and_named(cvat_client, project, model, blurred_pool, schema, tmp_path,
                                                      monkeypatch, work):
    open_again = opener(cvat_client, project, model, blurred_pool, schema, tmp_path)
    orphan = killed_round(cvat_client, project, open_again, monkeypatch, name="_write_record")
    job = sorted(orphan.get_jobs(), key=lambda j: j.start_frame)[0]
    if work == "state":
        job.update({"state": "in progress"})
    elif work == "annotations":  # a person moved a point but left the job "new"
        _move_one_point(job)
    else:  # a person removed every pre-annotation (nobody in these frames)
        orphan.remove_annotations()

    with pytest.raises(CalsError, match=rf"task {orphan.id} 'round 1'.*(job {job.id}|annotations differ|removed its pre)"):
        open_again()
    assert [t.id for t in round_tasks(cvat_client, project.id).values()] == [orphan.id]  # never deleted


def _move_one_point(job) -> None:
    """Replace the job's annotations by the same skeletons with one visible point moved 20 px."""
    ann = job.get_annotations()
    shapes, moved = [], False
    for s in ann.shapes:
        elements = []
        for e in s.elements:
            points = list(e.points)
            if not moved and not e.outside:
                points, moved = [points[0] + 20, points[1] + 20], True
            elements.append(models.SubLabeledShapeRequest(type="points", frame=e.frame, label_id=e.label_id,
                                                          points=points, outside=e.outside,
                                                          occluded=e.occluded))
        shapes.append(models.LabeledShapeRequest(type="skeleton", frame=s.frame, label_id=s.label_id,
                                                 points=[], elements=elements))
    assert moved
    job.set_annotations(models.LabeledDataRequest(shapes=shapes))


def test_an_orphans_points_are_compared_as_cvat_shows_them(schema):
    """A point off the image is uploaded hidden, so it is not looked for among the shown ones."""
    from types import SimpleNamespace

    from cals.cvat.round_orphans import _same_points
    from cals.cvat.round_upload import round_shapes

    k = schema.num_keypoints
    kp = [v for i in range(k) for v in (10.0 + i, 20.0 + i, 2)]
    kp[0] = 150.0  # x of point 0: off the 100 px wide image
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "frame": 0, "width": 100, "height": 80}],
            "annotations": [{"id": 1, "image_id": 1, "keypoints": kp, "scores": [0.9] * k}]}

    def as_cvat(shape, moved=0.0):
        elements = [SimpleNamespace(points=[e["points"][0] + moved, e["points"][1]], outside=bool(e["outside"]))
                    for e in shape["elements"]]
        return SimpleNamespace(type=SimpleNamespace(value="skeleton"), frame=shape["frame"], elements=elements)

    (shape,) = round_shapes(coco, schema, 0.6)
    assert shape["elements"][0]["outside"] and not any(e["outside"] for e in shape["elements"][1:])
    assert _same_points([as_cvat(shape)], coco, ["a.jpg"])
    assert not _same_points([as_cvat(shape, moved=20.0)], coco, ["a.jpg"])
