"""Articulated 3D body: one kinematic model gives every keypoint and the torso's local frames.

Units are fractions of body height; axes: x = the person's left, y = up, z = forward.
The spine is a chain of 8 segments from the sacrum up to C1, each bent by its own
flexion/lateral/twist angles, so shoulders, head and torso shape all follow the curve.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Spine chain, bottom-up: sacrum midpoint, L5, L3, T12/L1, T8, T3, C7, C3/C4, C1.
SPINE_CHAIN = ("hip", "spine_01", "spine_02", "spine_03", "spine_04", "spine_05",
               "neck", "neck_02", "neck_03")
SEGMENT_LENGTHS = np.array([0.045, 0.05, 0.055, 0.075, 0.07, 0.05, 0.04, 0.03])
HEAD_CENTER = (0.0, 0.055, 0.025)
HEAD_RADIUS = 0.062
_HEAD_POINTS = {  # head frame offsets from the head centre
    "nose": (0.0, -0.005, 0.072),
    "left_eye": (0.028, 0.017, 0.056), "right_eye": (-0.028, 0.017, 0.056),
    "left_ear": (0.064, 0.0, -0.002), "right_ear": (-0.064, 0.0, -0.002),
}
KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
) + SPINE_CHAIN[::-1]
DOWN = np.array([0.0, -1.0, 0.0])


@dataclass(frozen=True)
class Limb:
    """Joint angles (degrees) of one arm or leg: flexion forward, abduction sideways, bend of the middle joint."""
    flexion: float
    abduction: float
    bend: float


@dataclass(frozen=True)
class Pose:
    """Everything that decides one body's shape (degrees); sampled per family in `poses.py`."""
    family: str
    flexion: np.ndarray   # (8,) forward bend per spine segment; [0] tilts the pelvis
    lateral: np.ndarray   # (8,) sideways bend per segment
    twist: np.ndarray     # (8,) axial rotation per segment
    head: tuple[float, float, float]  # pitch, yaw, roll relative to the C1 frame
    arms: tuple[Limb, Limb]  # left, right
    legs: tuple[Limb, Limb]  # left, right
    yaw: float    # facing relative to the camera: 0 = facing it, 180 = back to it
    roll: float   # in-plane rotation of the whole body in the image (lying ~ ±90)
    shoulder_width: float = 0.24
    hip_width: float = 0.17
    limb_scale: float = 1.0


@dataclass(frozen=True)
class Body:
    """A posed body in camera coordinates (x right, y up, z towards the camera), height 1."""
    pose: Pose
    points: dict[str, np.ndarray]    # name -> (3,)
    spine_frames: np.ndarray         # (9, 3, 3) local frame at each spine-chain point
    head_frame: np.ndarray           # (3, 3)
    head_center: np.ndarray          # (3,)


def rot(axis: str, deg: float) -> np.ndarray:
    """Rotation matrix about a principal axis."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _spine(pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Walk the chain from the sacrum: (9, 3) points and (9, 3, 3) frames."""
    frame = np.eye(3)
    pts, frames = [np.zeros(3)], []
    for i, length in enumerate(SEGMENT_LENGTHS):
        frame = frame @ rot("x", pose.flexion[i]) @ rot("z", pose.lateral[i]) @ rot("y", pose.twist[i])
        frames.append(frame)
        pts.append(pts[-1] + frame @ np.array([0.0, length, 0.0]))
    frames.append(frames[-1])
    return np.array(pts), np.array(frames)


def _limb(origin: np.ndarray, frame: np.ndarray, limb: Limb, side: int,
          lengths: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Middle and end joint of a two-segment limb hanging from `origin` (side +1 = left)."""
    upper = frame @ rot("x", -limb.flexion) @ rot("z", side * limb.abduction)
    middle = origin + upper @ DOWN * lengths[0]
    end = middle + upper @ rot("x", limb.bend) @ DOWN * lengths[1]
    return middle, end


def build_body(pose: Pose) -> Body:
    """Pose -> 3D keypoints; the camera looks along -z after turning the body by `pose.yaw`."""
    spine, frames = _spine(pose)
    pts = {name: spine[i] for i, name in enumerate(SPINE_CHAIN)}
    girdle = frames[5]
    centre = spine[6] + girdle @ np.array([0.0, -0.025, 0.035])
    k = pose.limb_scale
    # arms bend forward at the elbow, legs bend backward at the knee
    for side, name in ((1, "left"), (-1, "right")):
        shoulder = centre + girdle @ np.array([side * pose.shoulder_width / 2, 0.0, 0.0])
        arm = pose.arms[0 if side == 1 else 1]
        elbow, wrist = _limb(shoulder, girdle, Limb(arm.flexion, arm.abduction, -arm.bend), side,
                             (0.17 * k, 0.15 * k))
        hip = frames[0] @ np.array([side * pose.hip_width / 2, -0.035, 0.045])
        knee, ankle = _limb(hip, np.eye(3), pose.legs[0 if side == 1 else 1], side, (0.245 * k, 0.245 * k))
        pts.update({f"{name}_shoulder": shoulder, f"{name}_elbow": elbow, f"{name}_wrist": wrist,
                    f"{name}_hip": hip, f"{name}_knee": knee, f"{name}_ankle": ankle})
    head_frame = frames[8] @ rot("x", pose.head[0]) @ rot("y", pose.head[1]) @ rot("z", pose.head[2])
    head_center = spine[8] + head_frame @ np.array(HEAD_CENTER)
    for name, offset in _HEAD_POINTS.items():
        pts[name] = head_center + head_frame @ np.array(offset)
    view = rot("y", pose.yaw)
    return Body(pose, {n: view @ p for n, p in pts.items()}, view @ frames,
                view @ head_frame, view @ head_center)
