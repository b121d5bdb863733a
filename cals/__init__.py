"""CALS: continuous active learning of new keypoints (the human spine first) for CVAT."""
__version__ = "0.1.0"
