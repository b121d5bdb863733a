"""Serving the current model to CVAT: request decoding, model watching, CVAT shapes.

The Nuclio function (`serverless/spine-pose/nuclio/main.py`) and the cvat-sdk
auto-annotation function (`cals.serving.auto_annotation`) are thin shells over
`cals.serving.service.SkeletonService`; nothing here imports Nuclio.
"""
