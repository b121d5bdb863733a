"""Sampler service: ranks the unlabelled pool with the current model and opens CVAT rounds."""
from sampler.app import create_app

__all__ = ["create_app"]
