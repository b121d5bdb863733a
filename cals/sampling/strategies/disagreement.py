"""Disagreement between two predictions of the same people: mirrored input, or two model versions."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from cals.model.person_pose import PersonPose
from cals.sampling.strategies.base import Observation, Strategy, box_scale


class FlipDisagreement(Strategy):
    """Mean distance, in box-size units, between the prediction and the one on the mirrored image.

    A model that has really found a point finds it again in the mirror image; where it guesses,
    the two answers part. The scorer predicts the mirrored image (flip test off), maps the points
    back and swaps left/right partners (schema flip indices) before this compares them.
    References: flip-test consistency as uncertainty, e.g. Bahat & Shakhnarovich, "Classification
    confidence estimation with test-time data augmentation", 2020.
    """

    name = "flip"
    needs = frozenset({"mirrored"})

    def score_person(self, obs: Observation, index: int) -> float:
        if obs.mirrored is None:
            raise ValueError("flip needs the mirrored prediction (scorer option 'mirrored')")
        return _distance(obs.people[index], obs.mirrored[index], self.points)


class CommitteeDisagreement(Strategy):
    """Mean distance, in box-size units, between the current and the previous model version.

    Two versions trained on different amounts of labels are a committee of two: where they
    disagree, the new labels changed the answer and the question is still open.
    References: Seung, Opper & Sompolinsky, "Query by committee", COLT 1992.
    """

    name = "committee"
    needs = frozenset({"previous"})

    def score_person(self, obs: Observation, index: int) -> float:
        if obs.previous is None:
            raise ValueError("committee needs a previous model version's prediction")
        return _distance(obs.people[index], obs.previous[index], self.points)


def _distance(a: PersonPose, b: PersonPose, points: Sequence[int] | None) -> float:
    d = np.linalg.norm(np.asarray(a.keypoints, float) - np.asarray(b.keypoints, float), axis=1)
    d = d if points is None else d[list(points)]
    return float(d.mean() / box_scale(a))
