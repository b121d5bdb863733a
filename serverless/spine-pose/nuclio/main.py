"""Nuclio entry points for CVAT's "AI Tools → Detectors" and automatic annotation.

Transport only: the service (detector + registry-watching pose model) lives in
`cals.serving`; see serverless/README.md for the request, the response and settings.
"""
from cals.serving.cvat_detector import respond
from cals.serving.service import SkeletonService


def init_context(context):
    """Build the service once per worker: detector, registry watcher, first model."""
    context.user_data.service = SkeletonService.from_env()
    context.logger.info("spine-pose ready")


def handler(context, event):
    """JSON {"image": base64, "threshold": float?} -> JSON list of CVAT skeleton shapes."""
    reply = respond(context.user_data.service, event.body)
    return context.Response(body=reply.body, headers=reply.headers,
                            content_type="application/json", status_code=reply.status)
