"""What the strategies need beyond one prediction: the prediction on the mirrored image, and
one feature vector per image from its people's pooled backbone features."""
from __future__ import annotations

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
    people = predictor.predict(np.ascontiguousarray(image[:, ::-1]), mirrored_boxes, distributions=False,
                               flip_test=False)
    flip = predictor.schema.flip_indices
    out = []
    for p, box in zip(people, boxes):
        kp = np.asarray(p.keypoints, np.float32)[flip].copy()
        kp[:, 0] = w - 1 - kp[:, 0]
        out.append(PersonPose(bbox=box, keypoints=kp, scores=np.asarray(p.scores)[flip]))
    return out


def image_feature(predictor: Predictor, people: list[PersonPose]) -> np.ndarray:
    """The image's feature: the mean of its people's (zeros of the right size when nobody is there)."""
    if not people:
        head = getattr(predictor.model.head, "in_channels", None)
        return np.zeros(int(head) if isinstance(head, int) else 1, np.float32)
    return np.mean([p.feature for p in people], axis=0).astype(np.float32)
