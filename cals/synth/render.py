"""Drawing one posed body: limbs as thick strokes, the torso as a band along the spine.

The torso band is built around the spine chain (offset forward by half the body depth),
so its outline bends exactly as the spine does; a darker seam marks the spine itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cals.synth.body import HEAD_RADIUS, SPINE_CHAIN, Body
from cals.synth.canvas import Canvas

TORSO = SPINE_CHAIN[:7]                     # sacrum .. C7
_HALF_WIDTH = np.array([0.09, 0.085, 0.075, 0.078, 0.09, 0.1, 0.07])
_HALF_DEPTH = np.array([0.055, 0.05, 0.048, 0.055, 0.06, 0.058, 0.045])
_WAIST = 2                                  # band index where trousers end and shirt starts
_SKIN = np.array([[45, 60, 95], [70, 100, 150], [110, 150, 200], [150, 185, 225], [60, 85, 125]])


@dataclass(frozen=True)
class Look:
    """Colours (BGR) and clothing choices of one person."""
    skin: np.ndarray
    shirt: np.ndarray
    pants: np.ndarray
    hair: np.ndarray
    shoes: np.ndarray
    long_sleeves: bool
    seam: float          # how much darker the spine seam is (0..1)


def sample_look(rng: np.random.Generator) -> Look:
    skin = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.85, 1.15) + rng.normal(0, 6, 3)
    return Look(skin=skin, shirt=rng.uniform(20, 240, 3), pants=rng.uniform(15, 200, 3),
                hair=rng.uniform(10, 90) * np.array([1.0, 1.1, 1.3]) * rng.uniform(0.6, 1.4, 3),
                shoes=rng.uniform(10, 90, 3), long_sleeves=bool(rng.random() < 0.5),
                seam=float(rng.uniform(0.25, 0.55)))


@dataclass(frozen=True)
class Placement:
    """Body units -> pixels: scale (body height in px), in-plane roll (deg), offset of the sacrum."""
    scale: float
    roll: float
    offset: np.ndarray

    def vec(self, v: np.ndarray) -> np.ndarray:
        """Project 3D vectors (..., 3) to image-plane vectors (..., 2)."""
        c, s = np.cos(np.radians(self.roll)), np.sin(np.radians(self.roll))
        x, y = v[..., 0], -v[..., 1]
        return self.scale * np.stack([c * x - s * y, s * x + c * y], axis=-1)

    def point(self, p: np.ndarray) -> np.ndarray:
        return self.vec(p) + self.offset


def torso_outline(body: Body, at: Placement) -> tuple[np.ndarray, np.ndarray]:
    """(7, 2) left and right edges of the torso band, following the curved spine."""
    frames = body.spine_frames[:7]
    spine = np.array([body.points[n] for n in TORSO])
    width = _HALF_WIDTH * (body.pose.shoulder_width / 0.24) ** np.linspace(0, 1, 7) \
        * (body.pose.hip_width / 0.17) ** np.linspace(1, 0, 7)
    centre3 = spine + frames[:, :, 2] * _HALF_DEPTH[:, None]
    centre = at.point(centre3)
    tangent = np.gradient(centre, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    ex = at.vec(frames[:, :, 0] * width[:, None])
    ez = at.vec(frames[:, :, 2] * _HALF_DEPTH[:, None])
    half = np.hypot((ex * normal).sum(1), (ez * normal).sum(1))
    return centre + normal * half[:, None], centre - normal * half[:, None]


def _draw_torso(cv: Canvas, body: Body, at: Placement, look: Look, px: dict) -> None:
    left, right = torso_outline(body, at)
    w = at.scale
    cv.line(np.array([px["left_shoulder"], px["right_shoulder"]]), look.shirt, 0.09 * w)
    cv.polygon(np.concatenate([left[_WAIST:], right[_WAIST:][::-1]]), look.shirt)
    cv.line(np.array([px["left_hip"], px["right_hip"]]), look.pants, 0.075 * w)
    cv.polygon(np.concatenate([left[:_WAIST + 1], right[:_WAIST + 1][::-1]]), look.pants)
    # the seam shows most when the back faces the camera (frame z-axis pointing away)
    back = np.clip(-body.spine_frames[:7, 2, 2], 0, 1)
    strength = look.seam * (0.35 + 0.65 * back.mean())
    seam = np.array([px[n] for n in TORSO])
    cv.line(seam[_WAIST:], look.shirt * (1 - strength), max(1.0, 0.014 * w), label=False)
    cv.line(seam[:_WAIST + 1], look.pants * (1 - strength), max(1.0, 0.014 * w), label=False)


def _draw_head(cv: Canvas, body: Body, at: Placement, look: Look, px: dict) -> None:
    w = at.scale
    centre = at.point(body.head_center)
    up = at.vec(body.head_frame[:, 1])
    angle = np.degrees(np.arctan2(up[1], up[0])) + 90
    cv.line(np.array([px["neck"], px["neck_03"]]), look.skin, 0.055 * w)
    back = at.vec(-body.head_frame[:, 2] * HEAD_RADIUS * 0.35 + body.head_frame[:, 1] * HEAD_RADIUS * 0.2)
    cv.ellipse(centre + back, (HEAD_RADIUS * w * 0.95, HEAD_RADIUS * w * 1.05), angle, look.hair)
    cv.ellipse(centre, (HEAD_RADIUS * w * 0.82, HEAD_RADIUS * w), angle, look.skin)
    facing = body.head_frame[2, 2]
    if facing > 0.2:           # face towards the camera: hairline on top, eyes visible
        top = at.vec(body.head_frame[:, 1] * HEAD_RADIUS * 0.75)
        cv.ellipse(centre + top, (HEAD_RADIUS * w * 0.8, HEAD_RADIUS * w * 0.35), angle, look.hair,
                   label=False)
        for eye in ("left_eye", "right_eye"):
            cv.ellipse(px[eye], (0.008 * w + 0.4, 0.006 * w + 0.4), angle, look.skin * 0.3, label=False)
    elif facing < -0.2:        # back of the head: hair covers it
        cv.ellipse(centre, (HEAD_RADIUS * w * 0.8, HEAD_RADIUS * w * 0.95), angle, look.hair, label=False)


def _limb_parts(body: Body, look: Look):
    """(owners, endpoints, colour, width, end cap) for every limb segment."""
    arm = look.shirt if look.long_sleeves else look.skin
    for side in ("left", "right"):
        yield (f"{side}_shoulder", f"{side}_elbow"), look.shirt, 0.058, None
        yield (f"{side}_elbow", f"{side}_wrist"), arm, 0.046, look.skin
        yield (f"{side}_hip", f"{side}_knee"), look.pants, 0.085, None
        yield (f"{side}_knee", f"{side}_ankle"), look.pants, 0.065, look.shoes


def draw_person(cv: Canvas, body: Body, at: Placement, look: Look) -> dict[str, int]:
    """Draw back-to-front; returns keypoint name -> last part number that keypoint belongs to."""
    px = {n: at.point(p) for n, p in body.points.items()}
    depth = {n: p[2] for n, p in body.points.items()}
    parts = [(float(np.mean([depth[n] for n in TORSO])) + 0.05, TORSO + ("left_shoulder", "right_shoulder",
              "left_hip", "right_hip"), lambda: _draw_torso(cv, body, at, look, px))]
    parts.append((body.head_center[2], ("nose", "left_eye", "right_eye", "left_ear", "right_ear",
                                        "neck", "neck_02", "neck_03"),
                   lambda: _draw_head(cv, body, at, look, px)))
    for ends, colour, width, cap in _limb_parts(body, look):
        def draw(ends=ends, colour=colour, width=width, cap=cap):
            cv.line(np.array([px[ends[0]], px[ends[1]]]), colour, width * at.scale)
            if cap is not None:
                cv.ellipse(px[ends[1]], (0.03 * at.scale, 0.024 * at.scale), 0, cap)
        parts.append(((depth[ends[0]] + depth[ends[1]]) / 2, ends, draw))
    owner: dict[str, int] = {}
    for _, names, draw in sorted(parts, key=lambda p: p[0]):
        part = cv.new_part()
        draw()
        owner.update({n: part for n in names})
    return owner
