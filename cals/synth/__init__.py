"""Synthetic people with a curved spine: the project's test and demo data (COCO keypoints)."""
from cals.synth.dataset import generate_dataset, parse_mix
from cals.synth.poses import POSE_FAMILIES

__all__ = ["generate_dataset", "parse_mix", "POSE_FAMILIES"]
