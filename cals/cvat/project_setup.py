"""The CVAT project CALS works in: the schema's skeleton label, and the webhook that wakes the trainer.

`make setup-project` runs these; running it again changes nothing that is already right.
An existing label is never edited: CVAT stores people's annotations per sublabel, so changing a
skeleton could lose work. A label that differs from the schema is an error that says how.
"""
from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from cvat_sdk.api_client import models

from cals.errors import CalsError
from cals.schema import Schema

log = logging.getLogger(__name__)
WEBHOOK_EVENTS = ("update:job",)  # what trainer/webhooks.py acts on
WEBHOOK_PATH = "/webhooks/cvat"


class SetupError(CalsError):
    """The CVAT project cannot be made to match what the trainer and sampler expect."""


@dataclass(frozen=True)
class Step:
    """What one setup step found or did, for the command's report."""

    what: str
    action: str  # "created" | "updated" | "unchanged"
    id: int
    note: str = ""  # one line the user should act on

    def __str__(self) -> str:
        return f"{self.what} {self.id}: {self.action}" + (f"; {self.note}" if self.note else "")


def skeleton_sublabels(labels, skeleton) -> list:
    """A skeleton's point sublabels, whether CVAT nests them or lists them with `parent_id`."""
    nested = list(getattr(skeleton, "sublabels", None) or [])
    return nested + [lab for lab in labels if getattr(lab, "parent_id", None) == skeleton.id]


def label_problems(labels, schema: Schema) -> list[str]:
    """Why the project's labels cannot carry the schema's skeleton; empty when they can."""
    same_name = [lab for lab in labels if lab.name == schema.label and getattr(lab, "parent_id", None) is None]
    if not same_name:
        return [f"no label named {schema.label!r}"]
    label = same_name[0]
    kind = str(getattr(label.type, "value", label.type))
    if kind != "skeleton":
        return [f"label {schema.label!r} is of type {kind!r}, not a skeleton"]
    have = [sub.name for sub in skeleton_sublabels(labels, label)]
    problems = []
    missing = [n for n in schema.names if n not in have]
    extra = [n for n in have if n not in schema.names]
    if missing:
        problems.append(f"skeleton {schema.label!r} lacks point(s) {', '.join(missing)}")
    if extra:
        problems.append(f"skeleton {schema.label!r} has point(s) not in the schema: {', '.join(extra)}")
    return problems


def missing_check_attributes(labels, schema: Schema) -> str:
    """One line naming the points-to-check attributes the project's skeleton lacks, and what to do;
    empty when it has them all (a label made before they existed lacks them)."""
    from cals.cvat.point_checks import point_attribute_specs, skeleton_attribute_specs

    label = next(lab for lab in labels if lab.name == schema.label and getattr(lab, "parent_id", None) is None)
    want_skeleton = [a["name"] for a in skeleton_attribute_specs()]
    want_point = [a["name"] for a in point_attribute_specs()]
    lacks = [f"skeleton: {', '.join(n for n in want_skeleton if n not in _attribute_names(label))}"] \
        if not set(want_skeleton) <= _attribute_names(label) else []
    bare = [sub.name for sub in skeleton_sublabels(labels, label) if not set(want_point) <= _attribute_names(sub)]
    if bare:
        lacks.append(f"{len(bare)} point(s): {', '.join(want_point)}")
    if not lacks:
        return ""
    return (f"label {schema.label!r} lacks the points-to-check attributes ({'; '.join(lacks)}), so CVAT drops "
            "the model's doubt flags: CALS never edits a label people work in; for them, run make setup-project "
            "with a new CALS_PROJECT_NAME (point attributes can only be made with a new label)")


def _attribute_names(label) -> set[str]:
    return {a.name for a in (getattr(label, "attributes", None) or [])}


def find_project(client, *, project_id: int | None = None, name: str | None = None):
    """The project by id (an error if it does not exist), else by exact name, else None."""
    from cvat_sdk.api_client.exceptions import NotFoundException

    if project_id is not None:
        try:
            return client.projects.retrieve(project_id)
        except NotFoundException:
            raise SetupError(f"CVAT has no project {project_id} (CALS_PROJECT_ID)") from None
    matches = [p for p in client.projects.list() if p.name == name]
    if len(matches) > 1:
        raise SetupError(f"{len(matches)} CVAT projects are named {name!r} "
                         f"(ids {', '.join(str(p.id) for p in matches)}); set CALS_PROJECT_ID to choose one")
    return matches[0] if matches else None


def ensure_project(client, schema: Schema, *, project_id: int | None = None, name: str) -> tuple[object, Step]:
    """Find or create the project and give it the schema's skeleton label when it has none."""
    project = find_project(client, project_id=project_id, name=name)
    if project is None:
        project = client.projects.create({"name": name, "labels": [schema.cvat_label()]})
        log.info("created CVAT project %d %r", project.id, name)
        return project, Step("project", "created", project.id)
    problems = label_problems(project.get_labels(), schema)
    if problems == [f"no label named {schema.label!r}"]:
        project.update(models.PatchedProjectWriteRequest(labels=[_label_request(schema)]))
        log.info("added skeleton label %r to project %d", schema.label, project.id)
        return project, Step("project", "updated", project.id)
    if problems:
        raise SetupError(f"project {project.id} ({project.name!r}): {'; '.join(problems)}. CALS does not edit "
                         "existing labels (that could lose annotations): fix the label in CVAT, or use "
                         "another project (CALS_PROJECT_NAME) or schema (CALS_SCHEMA)")
    note = missing_check_attributes(project.get_labels(), schema)
    if note:
        log.warning("project %d: %s", project.id, note)
    return project, Step("project", "unchanged", project.id, note)


def _label_request(schema: Schema) -> models.PatchedLabelRequest:
    spec = schema.cvat_label()
    return models.PatchedLabelRequest(
        name=spec["name"], type=spec["type"], svg=spec["svg"], attributes=_attributes(spec),
        sublabels=[models.SublabelRequest(name=s["name"], type=s["type"], attributes=_attributes(s))
                   for s in spec["sublabels"]])


def _attributes(spec: dict) -> list[models.AttributeRequest]:
    return [models.AttributeRequest(**a) for a in spec.get("attributes", [])]


def webhook_url(trainer_url: str) -> str:
    """The trainer's webhook address, refused here when CVAT would refuse it (see `url_problem`)."""
    url = trainer_url.rstrip("/") + WEBHOOK_PATH
    problem = url_problem(url)
    if problem:
        raise SetupError(f"CVAT will not take {url} as a webhook target: {problem}. Set CALS_TRAINER_URL to an "
                         "address CVAT's webhook worker reaches by an IP, localhost or a dotted name (the compose "
                         "file gives the trainer the alias trainer.cals.internal on CVAT's network)")
    return url


# CVAT keeps `target_url` in a Django URLField, whose validator takes an IP address, `localhost` or a
# dotted host name whose last label is alphabetic (or punycode); "cals-trainer" alone is refused with
# "Enter a valid URL.".
_LABEL = r"[a-z0-9\u00a1-\uffff](?:[a-z0-9\u00a1-\uffff-]{0,61}[a-z0-9\u00a1-\uffff])?"
_TLD = r"(?:[a-z\u00a1-\uffff-]{2,63}|xn--[a-z0-9]{1,59})"
_DOTTED = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.(?!-){_TLD}(?<!-)\.?$", re.IGNORECASE)


def url_problem(url: str) -> str | None:
    """Why CVAT's URL validation refuses `url`, or None when it accepts it."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        return f"malformed address ({exc})"
    if parts.scheme not in ("http", "https"):
        return "it needs an http:// or https:// address"
    host = parts.hostname or ""
    if not host:
        return "it has no host name"
    if host == "localhost" or _DOTTED.match(host):
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if "." not in host:
        return f"the host name {host!r} has no dot (CVAT takes an IP, localhost or a dotted name)"
    return f"{host!r} does not end in an alphabetic top-level name"


def find_webhook(client, project_id: int, target_url: str):
    hooks = client.api_client.webhooks_api.list(project_id=project_id, target_url=target_url)[0].results
    return next((h for h in hooks if h.target_url == target_url and h.project_id == project_id), None)


def ensure_webhook(client, project_id: int, target_url: str, secret: str) -> Step:
    """One active project webhook on `update:job` to the trainer, signed with `secret`.

    CVAT never shows a webhook's secret, so an existing hook always gets the secret set again.
    """
    if not secret:
        raise SetupError("the webhook needs a secret (CALS_WEBHOOK_SECRET)")
    api = client.api_client.webhooks_api
    events = [models.EventsEnum(e) for e in WEBHOOK_EVENTS]
    hook = find_webhook(client, project_id, target_url)
    if hook is None:
        created, _ = api.create(models.WebhookWriteRequest(
            target_url=target_url, type=models.WebhookType("project"), events=events, project_id=project_id,
            secret=secret, content_type=models.WebhookContentType("application/json"), is_active=True,
            enable_ssl=True, description="CALS: completed jobs wake the training sidecar"))
        log.info("registered webhook %d -> %s", created.id, target_url)
        return Step("webhook", "created", created.id)
    api.partial_update(hook.id, patched_webhook_write_request=models.PatchedWebhookWriteRequest(
        events=events, secret=secret, is_active=True,
        content_type=models.WebhookContentType("application/json")))
    same = sorted(str(getattr(e, "value", e)) for e in hook.events) == sorted(WEBHOOK_EVENTS) and hook.is_active
    return Step("webhook", "unchanged" if same else "updated", hook.id)


def ping_webhook(client, webhook_id: int) -> tuple[int | None, str]:
    """Ask CVAT to ping the webhook now; (HTTP status the target answered, its response text)."""
    delivery, _ = client.api_client.webhooks_api.create_ping(webhook_id)
    return delivery.status_code, str(delivery.response or "")
