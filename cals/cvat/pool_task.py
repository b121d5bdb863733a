"""Upload the unlabelled pool into CVAT once: the task the sampler picks rounds from (cvat/pool.py).

The images go in as they are; the people already labelled (body points from a COCO dataset, say)
go in as skeletons, so the sampler scores the right people and keeps their points in round
pre-annotations. Refuses to touch an existing pool task: its frames may already be in rounds.
"""
from __future__ import annotations

import logging

from cals.cvat.pool import project_tasks
from cals.cvat.coco_upload import import_coco
from cals.data.coco import Dataset
from cals.errors import CalsError

log = logging.getLogger(__name__)


def create_pool_task(client, project_id: int, dataset: Dataset, *, name: str = "pool"):
    """Create task `name` in the project with the dataset's images and its people as skeletons."""
    existing = [t for t in project_tasks(client, project_id) if t.name == name]
    if existing:
        raise CalsError(f"project {project_id} already has a task named {name!r} (task {existing[0].id}); "
                        "the pool is uploaded once: delete that task first, or use another CALS_POOL_TASK")
    images = [dataset.image_path(im) for im in dataset.coco["images"]]
    if not images:
        raise CalsError(f"{dataset.ann_file} lists no images")
    log.info("uploading %d pool images into project %d as task %r", len(images), project_id, name)
    task = client.tasks.create_from_data({"name": name, "project_id": project_id}, images)
    try:
        if dataset.coco["annotations"]:
            import_coco(task, dataset.coco)
    except BaseException:
        client.tasks.remove_by_ids([task.id])
        log.warning("deleted pool task %d after its annotations failed to import", task.id)
        raise
    return task
