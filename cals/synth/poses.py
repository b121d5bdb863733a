"""Pose families: how each family bends the spine and limbs, with random variation.

The spine's curvature amplitude is drawn independently of the limbs in every family,
so the spine cannot be predicted from the COCO-17 body points alone.
"""
from __future__ import annotations

import numpy as np

from cals.synth.body import Limb, Pose

POSE_FAMILIES = ("upright", "bending", "sitting", "lying", "twisting")
# Natural S-curve per segment (deg): pelvis tilt, lumbar lordosis, thoracic kyphosis, cervical lordosis.
_NATURAL = np.array([8.0, -10.0, -8.0, 6.0, 10.0, 8.0, -10.0, -6.0])
_SEGMENTS = np.arange(8)


def _spine_angles(rng: np.random.Generator, lateral_amp: float) -> tuple[np.ndarray, ...]:
    """Base curvature: a random-amplitude S-curve plus a random scoliosis-like lateral wave."""
    flexion = _NATURAL * rng.uniform(0.3, 1.8) + rng.normal(0.0, 3.0, 8)
    waves = rng.choice([1.0, 1.5, 2.0])
    phase = rng.uniform(0, 2 * np.pi)
    lateral = lateral_amp * rng.choice([-1, 1]) * np.sin(np.pi * waves * _SEGMENTS / 7 + phase)
    lateral = lateral + rng.normal(0.0, 1.5, 8)
    twist = rng.normal(0.0, 3.0, 8)
    return flexion, lateral, twist


def _arm(rng: np.random.Generator, flexion: tuple[float, float] = (-30, 120)) -> Limb:
    return Limb(rng.uniform(*flexion), abs(rng.normal(0, 35)) + 4, rng.uniform(0, 130))


def _leg(rng: np.random.Generator, flexion: tuple[float, float], bend: tuple[float, float]) -> Limb:
    return Limb(rng.uniform(*flexion), rng.uniform(0, 14), rng.uniform(*bend))


def _upright(rng, flexion, lateral, twist):
    stride = rng.uniform(-25, 25) if rng.random() < 0.5 else rng.uniform(-5, 5)
    legs = (_leg(rng, (stride - 3, stride + 3), (0, 30)), _leg(rng, (-stride - 3, -stride + 3), (0, 30)))
    return dict(arms=(_arm(rng), _arm(rng)), legs=legs)


def _bending(rng, flexion, lateral, twist):
    flexion[0] += rng.uniform(20, 60)       # hinge at the hips
    flexion[1:5] += rng.uniform(6, 22) * rng.uniform(0.6, 1.4, 4)  # lumbar + thoracic flexion
    flexion[6:8] -= rng.uniform(0, 20)       # look ahead
    hang = flexion[:6].sum()                 # arms hang towards the ground
    arms = tuple(_arm(rng, (hang - 35, hang + 25)) for _ in range(2))
    return dict(arms=arms, legs=tuple(_leg(rng, (-5, 10), (0, 30)) for _ in range(2)))


def _sitting(rng, flexion, lateral, twist):
    flexion[0] += rng.uniform(-20, 10)       # posterior pelvic tilt when slouching
    flexion[1:5] += rng.uniform(-3, 12)
    arms = tuple(_arm(rng, (0, 70)) for _ in range(2))
    return dict(arms=arms, legs=tuple(_leg(rng, (65, 110), (55, 115)) for _ in range(2)))


def _lying(rng, flexion, lateral, twist):
    arms = (_arm(rng, (-30, 170)), _arm(rng, (-30, 170)))
    return dict(arms=arms, legs=tuple(_leg(rng, (-5, 35), (0, 45)) for _ in range(2)),
                roll=rng.choice([-1, 1]) * rng.uniform(65, 115))


def _twisting(rng, flexion, lateral, twist):
    twist[2:6] += rng.choice([-1, 1]) * rng.uniform(30, 75) / 4   # shoulders against hips
    lateral += rng.choice([-1, 1]) * rng.uniform(3, 7) * np.sin(np.pi * _SEGMENTS / 7)
    arms = (_arm(rng), _arm(rng))
    return dict(arms=arms, legs=tuple(_leg(rng, (-15, 15), (0, 35)) for _ in range(2)))


_FAMILIES = {"upright": _upright, "bending": _bending, "sitting": _sitting,
             "lying": _lying, "twisting": _twisting}


def sample_pose(family: str, rng: np.random.Generator) -> Pose:
    """A random pose of one family: shared spine/head/proportion sampling, family-specific bends."""
    flexion, lateral, twist = _spine_angles(rng, rng.uniform(0.0, 4.0))
    parts = _FAMILIES[family](rng, flexion, lateral, twist)
    head = (rng.normal(0, 10), float(np.clip(rng.normal(0, 25), -70, 70)), rng.normal(0, 8))
    male = rng.random() < 0.5
    return Pose(
        family=family, flexion=flexion, lateral=lateral, twist=twist, head=head,
        arms=parts["arms"], legs=parts["legs"], yaw=rng.uniform(-180, 180),
        roll=parts.get("roll", rng.normal(0, 4)),
        shoulder_width=rng.uniform(0.24, 0.28) if male else rng.uniform(0.2, 0.24),
        hip_width=rng.uniform(0.15, 0.18) if male else rng.uniform(0.17, 0.2),
        limb_scale=rng.uniform(0.93, 1.07),
    )
