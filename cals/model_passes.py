"""Extra model passes the strategies need, done next to the Predictor without changing it:
the prediction on the mirrored image, and the pooled backbone feature of each person crop."""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from cals.model.predict import PersonPose, Predictor


def predict_mirrored(predictor: Predictor, image: np.ndarray, boxes: np.ndarray) -> list[PersonPose]:
    """Predict the horizontally mirrored image (flip test off), mapped back to the original frame.

    With the model's own flip test on, both passes would average the same two views and always
    agree; so it is switched off for this pass. Points come back as x → W − 1 − x with left/right
    partners swapped (schema flip indices), box order unchanged.
    """
    w = image.shape[1]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    mirrored_boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
    with flip_test_off(predictor):
        people = predictor.predict(np.ascontiguousarray(image[:, ::-1]), mirrored_boxes, distributions=False)
    flip = predictor.schema.flip_indices
    out = []
    for p, box in zip(people, boxes):
        kp = np.asarray(p.keypoints, np.float32)[flip].copy()
        kp[:, 0] = w - 1 - kp[:, 0]
        out.append(PersonPose(bbox=box, keypoints=kp, scores=np.asarray(p.scores)[flip]))
    return out


@contextlib.contextmanager
def flip_test_off(predictor: Predictor) -> Iterator[None]:
    cfg = predictor.model.test_cfg
    before = cfg.get("flip_test", False)
    cfg["flip_test"] = False
    try:
        yield
    finally:
        cfg["flip_test"] = before


class _Features:
    def __init__(self) -> None:
        self.per_person: np.ndarray | None = None

    def vector(self) -> np.ndarray | None:
        """The image's feature: mean over its people (zeros of the right size when nobody is there)."""
        if self.per_person is None:
            return None
        if not len(self.per_person):
            return np.zeros(self.per_person.shape[1], np.float32)
        return self.per_person.mean(axis=0).astype(np.float32)


@contextlib.contextmanager
def capture_features(predictor: Predictor, *, enabled: bool = True) -> Iterator[_Features]:
    """Global-average-pooled output of the backbone's last stage for the crops predicted inside.

    Only the first backbone call is kept: with flip test the model calls it again on the mirrored
    crops. An image without boxes never reaches the backbone and gets a zero vector.
    """
    found = _Features()
    if not enabled:
        yield found
        return

    def hook(module, inputs, output):
        if found.per_person is None:
            last = output[-1] if isinstance(output, (tuple, list)) else output
            found.per_person = last.detach().float().mean(dim=(2, 3)).cpu().numpy()

    handle = predictor.model.backbone.register_forward_hook(hook)
    try:
        yield found
    finally:
        handle.remove()
    if found.per_person is None:
        channels = _last_channels(predictor)
        found.per_person = np.zeros((0, channels), np.float32)


def _last_channels(predictor: Predictor) -> int:
    head = getattr(predictor.model.head, "in_channels", None)
    return int(head) if isinstance(head, int) else 1
