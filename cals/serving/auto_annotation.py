"""The same predictor as a cvat-sdk auto-annotation function, for CVAT without Nuclio.

    cvat-cli task auto-annotate TASK_ID --function-module cals.serving.auto_annotation \
        -p registry=str:/path/to/registry -p detector=str:/path/to/end2end.onnx

Unlike Nuclio results, cvat-sdk shapes keep scores: each point carries its model
score and each skeleton its detector score. `conf_threshold` (cvat-cli
`--conf-threshold`) filters people by detector score; points below `point_threshold`
are kept and marked outside, and a skeleton with every point outside is dropped.
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
from cals.serving.cvat_shapes import point_visible
from cals.settings import ServingEnv
from cals.serving.service import SkeletonService


class SpineSkeletonFunction:
    """A cvat-sdk detection function: `spec` (labels from the schema) and `detect`."""

    def __init__(self, service: SkeletonService, schema: Schema, *, point_threshold: float) -> None:
        self.service = service
        self.schema = schema
        self.point_threshold = point_threshold

    @cached_property
    def spec(self) -> cvataa.DetectionFunctionSpec:
        points = [cvataa.keypoint_spec(name, i) for i, name in enumerate(self.schema.names)]
        return cvataa.DetectionFunctionSpec(
            labels=[cvataa.skeleton_label_spec(self.schema.label, 0, points, svg=self.schema.cvat_svg())])

    def detect(self, context: cvataa.DetectionFunctionContext, image: PIL.Image.Image
               ) -> list[models.LabeledShapeRequest]:
        rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        found = self.service.annotate(np.ascontiguousarray(rgb[:, :, ::-1]),
                                      box_score=context.conf_threshold)
        if found.predictor.schema.names != self.schema.names:
            raise CalsError(f"the served model {found.predictor.version_id!r} has other points "
                            "than this function's spec; restart the function")
        shapes = []
        for person, box_score in zip(found.people, found.box_scores):
            visible = point_visible(person.scores, self.point_threshold, found.prior_points)
            if visible.any():
                shapes.append(cvataa.skeleton(0, [
                    cvataa.keypoint(i, [float(x), float(y)], outside=not shown, score=float(s))
                    for i, ((x, y), s, shown) in enumerate(zip(person.keypoints, person.scores, visible))
                ], score=float(box_score)))
        return shapes


def create(registry: str | None = None, detector: str | None = None, *,
           point_threshold: float | None = None, device: str | None = None) -> SpineSkeletonFunction:
    """The function over a registry (default $CALS_REGISTRY) and detector (default $CALS_DETECTOR)."""
    from cals.model.detector import PersonDetector

    env = ServingEnv.load()
    root = registry or env.REGISTRY
    if not root:
        raise CalsError("no registry: pass -p registry=str:PATH or set CALS_REGISTRY")
    threshold = env.POINT_THRESHOLD if point_threshold is None else float(point_threshold)
    if not 0.0 <= threshold <= 1.0:
        raise CalsError(f"point_threshold must be in [0, 1], got {threshold}")
    service = SkeletonService(Registry(root), PersonDetector(detector), device=device or env.DEVICE)
    schema = service.watcher.get().schema  # fails now, not mid-task, when nothing can serve
    return SpineSkeletonFunction(service, schema, point_threshold=threshold)
