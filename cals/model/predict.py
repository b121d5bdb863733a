"""Top-down prediction with a registry version: boxes in, 26-point people out.

The predictor is built once (the Nuclio function and the sampler keep it for
their lifetime) and returns, per person, pixel keypoints, per-point scores and
the raw per-point distributions (heatmaps or SimCC vectors) the sampler scores.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from cals.errors import CalsError
from cals.model import mm_imports
from cals.model.checkpoint import load_checkpoint
from cals.model.person_pose import PersonPose
from cals.model.pose_network import pick_network
from cals.model.prior import spine_prior
from cals.schema import load_schema

logger = logging.getLogger(__name__)


def default_device() -> str:
    """$CALS_DEVICE, else CUDA when present, else CPU."""
    from cals.settings import ModelEnv

    device = ModelEnv.load().DEVICE
    if device:
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def load_model(version_dir: str | os.PathLike, *, device: str = "cpu"):
    """The mmpose model of a version with its weights, its schema and its checkpoint meta."""
    mm_imports.setup()
    from mmpose.apis import init_model
    from mmpose.datasets.datasets.utils import parse_pose_metainfo

    version_dir = Path(version_dir)
    schema = load_schema(version_dir / "schema.yaml")
    state, meta = load_checkpoint(version_dir / "checkpoint.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = init_model(str(version_dir / "config.py"), None, device=device)
    # A dumped config lists keypoint_info keys in string order (0, 1, 10, 11, ...), and mmpose
    # derives flip_indices from that order: rebuild the metainfo from the schema instead, or
    # the flip test averages each point with the wrong partner.
    model.dataset_meta = parse_pose_metainfo(schema.mmpose_metainfo())
    missing = model.load_state_dict(state, strict=False)
    if missing.missing_keys:
        raise CalsError(f"checkpoint of {version_dir.name} lacks {len(missing.missing_keys)} "
                        f"weights, e.g. {missing.missing_keys[0]!r}")
    return model.eval(), schema, meta


def flip_test_setting() -> bool | None:
    """$CALS_FLIP_TEST: 1 or 0; unset keeps the model config's choice (on for both CALS configs)."""
    from cals.settings import ModelEnv

    return ModelEnv.load().FLIP_TEST


class Predictor:
    """A loaded model version. Build with `Predictor(version_dir)` or `Predictor.from_registry`.

    All people of an image go through the network in one batch (with their mirrored crops when
    the flip test is on), by ONNX Runtime, OpenVINO or PyTorch, in fp32 or int8
    (`backend` and `precision`: cals.model.pose_network).
    """

    def __init__(self, version_dir: str | os.PathLike, *, device: str | None = None,
                 version_id: str | None = None, backend: str | None = None,
                 flip_test: bool | None = None, precision: str | None = None):
        from mmengine.dataset import Compose

        version_dir = Path(version_dir)
        self.version_id = version_id or version_dir.name
        device = device or default_device()
        self.model, self.schema, meta = load_model(version_dir, device=device)
        self.spine_trained = bool(meta.get("spine_trained", True))
        self.network = pick_network(self.model, version_dir, device, backend, precision)
        self.model.head.forward = _outputs_as_given  # head.predict decodes what the network returned
        self.test_cfg = dict(self.model.test_cfg or {})
        flip = flip_test_setting() if flip_test is None else flip_test
        if flip is not None:
            self.test_cfg["flip_test"] = flip
        self._pipeline = Compose(self.model.cfg.test_dataloader.dataset.pipeline)
        self._samples_meta = dict(self.model.dataset_meta)
        logger.info("loaded %s: %s %s on %s, flip test %s", self.version_id, self.backend, self.precision,
                    device, "on" if self.flip_test else "off")

    @property
    def backend(self) -> str:
        return self.network.name

    @property
    def precision(self) -> str:
        return self.network.precision

    @property
    def flip_test(self) -> bool:
        return bool(self.test_cfg.get("flip_test"))

    @classmethod
    def from_registry(cls, registry, version_id: str | None = None, *, device: str | None = None
                      ) -> "Predictor":
        """The given version, or the registry's current one."""
        version = registry.get(version_id) if version_id else registry.current()
        if version is None:
            raise CalsError(f"registry {registry.root} has no current model; train and promote one first")
        return cls(version.path, device=device, version_id=version.id)

    def predict(self, image: np.ndarray | str | os.PathLike, boxes: np.ndarray, *, distributions: bool = True,
                flip_test: bool | None = None) -> list[PersonPose]:
        """Pose of each person box (N, 4 as x1, y1, x2, y2) in a BGR image or image file.

        `flip_test` overrides the predictor's setting for this call.
        """
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if not len(boxes):
            return []
        if isinstance(image, (str, os.PathLike)):
            image = _read_image(image)
        flip = self.flip_test if flip_test is None else flip_test
        samples, features = self._samples(image, boxes, distributions, flip)
        return [self._person(s, box, distributions, f) for s, box, f in zip(samples, boxes, features)]

    def _samples(self, image: np.ndarray, boxes: np.ndarray, distributions: bool, flip: bool
                 ) -> tuple[list, np.ndarray]:
        """mmpose's TopdownPoseEstimator.predict, with the network swapped and one batch for the flips."""
        import torch

        with torch.no_grad():
            inputs, data_samples = self.crops(image, boxes)
            test_cfg = {**self.test_cfg, "output_heatmaps": distributions, "flip_test": flip}
            if flip:
                outputs, features = self.network(torch.cat([inputs, inputs.flip(-1)]))
                outputs = _split(outputs, len(inputs))
            else:
                outputs, features = self.network(inputs)
            preds = self.model.head.predict(outputs, data_samples, test_cfg=test_cfg)
        instances, fields = preds if isinstance(preds, tuple) else (preds, None)
        _inside_crop(instances, self.model.cfg.codec.input_size)
        samples = self.model.add_pred_to_datasample(instances, fields, data_samples)
        return samples, features[:len(inputs)].float().cpu().numpy()  # (N, C) of the plain crops

    def crops(self, image: np.ndarray, boxes: np.ndarray) -> tuple:
        """(the network's input (N, 3, H, W), mmpose's data samples) of the person boxes: mmpose's
        crop pipeline and data preprocessor, as the model was trained with."""
        from mmengine.dataset import pseudo_collate

        one = np.ones(1, dtype=np.float32)
        batch = pseudo_collate([self._pipeline({"img": image, "bbox": box[None], "bbox_score": one,
                                                **self._samples_meta}) for box in boxes])
        data = self.model.data_preprocessor(batch, False)
        return data["inputs"], data["data_samples"]

    def _person(self, sample, box: np.ndarray, with_dists: bool, feature: np.ndarray) -> PersonPose:
        inst = sample.pred_instances
        kpts = np.asarray(inst.keypoints[0], dtype=np.float32)
        scores = np.clip(np.asarray(inst.keypoint_scores[0], dtype=np.float32), 0.0, 1.0)
        if not self.spine_trained:
            kpts, scores = spine_prior(kpts, scores, self.schema)
        dists = _distributions(sample) if with_dists else {}
        return PersonPose(bbox=box, keypoints=kpts, scores=scores, distributions=dists, feature=feature)


def _inside_crop(instances, input_size) -> None:
    """Clip decoded points to the crop the network saw, in place (input pixels, before the box's affine).

    DARK refinement (MSRAHeatmap `unbiased=True`) takes a Newton step from the heatmap's peak with
    no bound: on a flat or saddle-shaped heatmap it throws a point hundreds of pixels off, even
    outside the image (seen on a real photo). No decoder can know more than the crop."""
    width, height = input_size
    for inst in instances:
        np.clip(inst.keypoints[..., 0], 0, width, out=inst.keypoints[..., 0])
        np.clip(inst.keypoints[..., 1], 0, height, out=inst.keypoints[..., 1])


def _outputs_as_given(outputs):
    return outputs


def _split(outputs, n: int) -> list:
    """[plain, mirrored] from the outputs of one batch that holds both."""
    if isinstance(outputs, tuple):
        return [tuple(o[:n] for o in outputs), tuple(o[n:] for o in outputs)]
    return [outputs[:n], outputs[n:]]


def _distributions(sample) -> dict[str, np.ndarray]:
    inst = sample.pred_instances
    if "keypoint_x_labels" in inst:
        return {"simcc_x": np.asarray(inst.keypoint_x_labels[0]),
                "simcc_y": np.asarray(inst.keypoint_y_labels[0])}
    if "pred_fields" in sample and "heatmaps" in sample.pred_fields:
        return {"heatmaps": sample.pred_fields.heatmaps.cpu().numpy()}
    return {}


def _read_image(path: str | os.PathLike) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise CalsError(f"cannot read image {path}: missing or not an image")
    return img
