"""The same predictor as a cvat-sdk auto-annotation function, for CVAT without Nuclio.

    cvat-cli task auto-annotate TASK_ID --function-module cals.serving.auto_annotation \
        -p registry=str:/path/to/registry -p detector=str:/path/to/end2end.onnx

Unlike Nuclio results, cvat-sdk shapes keep scores: each point carries its model
score and each skeleton its detector score. `conf_threshold` (cvat-cli
`--conf-threshold`) filters people by detector score; points off the image or below
`point_threshold` are kept and marked outside, and a skeleton with every point outside is
dropped. Points to check are flagged with the same attributes as the Nuclio function's
(cals/cvat/point_checks.py); cvat-sdk refuses a function attribute the task's label lacks, so for a
project made before them pass `-p points_to_check=bool:false`.
"""
from __future__ import annotations

from functools import cached_property

import cvat_sdk.auto_annotation as cvataa
import cvat_sdk.models as models
import numpy as np
import PIL.Image
from PIL import ImageOps

from cals.errors import CalsError
from cals.registry import Registry
from cals.schema import Schema
from cals.cvat.point_checks import LABELLED, point_attribute_specs, point_attributes, skeleton_attribute_specs, \
    skeleton_attributes
from cals.cvat.shapes import on_image, point_visible
from cals.settings import ServingEnv
from cals.serving.service import SkeletonService


class SpineSkeletonFunction:
    """A cvat-sdk detection function: `spec` (labels from the schema) and `detect`."""

    def __init__(self, service: SkeletonService, schema: Schema, *, point_threshold: float,
                 points_to_check: bool = True) -> None:
        self.service = service
        self.schema = schema
        self.point_threshold = point_threshold
        self.points_to_check = points_to_check

    @cached_property
    def spec(self) -> cvataa.DetectionFunctionSpec:
        def attributes(specs: list[dict]) -> list:
            return [cvataa.attribute_spec(a["name"], i, a["input_type"], a["values"] if a["input_type"] == "number"
                                          else []) for i, a in enumerate(specs)] if self.points_to_check else []

        points = [cvataa.keypoint_spec(name, i, attributes=attributes(point_attribute_specs()))
                  for i, name in enumerate(self.schema.names)]
        return cvataa.DetectionFunctionSpec(labels=[cvataa.skeleton_label_spec(
            self.schema.label, 0, points, svg=self.schema.cvat_svg(),
            attributes=attributes(skeleton_attribute_specs()))])

    def _attributes(self, values: list[dict[str, str]]) -> list[models.AttributeValRequest]:
        """Name-keyed values (cals/cvat/point_checks.py) as this spec's attribute ids, in spec order."""
        return [models.AttributeValRequest(spec_id=i, value=v["value"]) for i, v in enumerate(values)] \
            if self.points_to_check else []

    def detect(self, context: cvataa.DetectionFunctionContext, image: PIL.Image.Image
               ) -> list[models.LabeledShapeRequest]:
        rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        found = self.service.annotate(np.ascontiguousarray(rgb[:, :, ::-1]),
                                      box_score=context.conf_threshold)
        if found.predictor.schema.names != self.schema.names:
            raise CalsError(f"the served model {found.predictor.version_id!r} has other points "
                            "than this function's spec; restart the function")
        shapes, below = [], self.service.check_below
        for person, box_score in zip(found.people, found.box_scores):
            visible = point_visible(person.scores, self.point_threshold, found.prior_points) & \
                on_image(person.keypoints, (rgb.shape[1], rgb.shape[0]))
            if visible.any():
                flag = np.where(visible, person.scores, LABELLED)
                shapes.append(cvataa.skeleton(0, [
                    cvataa.keypoint(i, [float(x), float(y)], outside=not shown, score=float(s),
                                    attributes=self._attributes(point_attributes(float(f), below)))
                    for i, ((x, y), s, f, shown) in enumerate(zip(person.keypoints, person.scores, flag, visible))
                ], score=float(box_score),
                    attributes=self._attributes(skeleton_attributes(flag, self.schema.spine, below))))
        return shapes


def create(registry: str | None = None, detector: str | None = None, *,
           point_threshold: float | None = None, device: str | None = None,
           points_to_check: bool = True) -> SpineSkeletonFunction:
    """The function over a registry (default $CALS_REGISTRY) and detector (default $CALS_DETECTOR)."""
    from cals.model.detector import PersonDetector

    env = ServingEnv.load()
    root = registry or env.REGISTRY
    if not root:
        raise CalsError("no registry: pass -p registry=str:PATH or set CALS_REGISTRY")
    threshold = env.POINT_THRESHOLD if point_threshold is None else float(point_threshold)
    if not 0.0 <= threshold <= 1.0:
        raise CalsError(f"point_threshold must be in [0, 1], got {threshold}")
    service = SkeletonService(Registry(root), PersonDetector(detector), device=device or env.DEVICE,
                              check_below=env.CHECK_BELOW)
    schema = service.watcher.get().schema  # fails now, not mid-task, when nothing can serve
    return SpineSkeletonFunction(service, schema, point_threshold=threshold, points_to_check=points_to_check)
