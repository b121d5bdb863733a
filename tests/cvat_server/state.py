"""In-memory state of the fake CVAT: users, projects, tasks, jobs, annotations, requests.

Everything lives in one `Store` guarded by one lock, because Flask serves requests from
several threads and CVAT's own guarantees (ids never reused, jobs immutable once created)
are easiest to keep that way.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from flask import current_app

T = TypeVar("T")


def now() -> datetime:
    """Timestamps are UTC like CVAT's."""
    return datetime.now(timezone.utc)


@dataclass
class User:
    id: int
    username: str
    password: str
    token: str = field(default_factory=lambda: secrets.token_hex(20))


@dataclass
class Label:
    id: int
    name: str
    type: str
    color: str
    attributes: list[dict[str, Any]]
    svg: str = ""
    parent_id: int | None = None
    sublabels: list["Label"] = field(default_factory=list)


@dataclass
class Frame:
    name: str
    data: bytes
    width: int
    height: int
    mime: str


@dataclass(kw_only=True)
class Resource:
    """What projects and tasks share: a name, an owner, labels, timestamps."""

    id: int
    name: str
    owner_id: int
    labels: list[Label]
    bug_tracker: str = ""
    assignee_id: int | None = None
    created: datetime = field(default_factory=now)
    updated: datetime = field(default_factory=now)


@dataclass(kw_only=True)
class Project(Resource):
    pass


@dataclass(kw_only=True)
class Task(Resource):
    project_id: int | None = None
    segment_size: int = 0
    overlap: int | None = None
    subset: str = ""
    frames: list[Frame] = field(default_factory=list)
    image_quality: int = 70
    chunk_size: int | None = None
    sorting_method: str = "lexicographical"
    data_id: int | None = None


@dataclass
class Job:
    id: int
    task_id: int
    start_frame: int
    stop_frame: int
    stage: str = "annotation"
    state: str = "new"
    assignee_id: int | None = None
    assignee_updated: datetime | None = None
    created: datetime = field(default_factory=now)
    updated: datetime = field(default_factory=now)

    @property
    def status(self) -> str:
        """CVAT derives the legacy `status` from stage and state."""
        if self.stage == "acceptance" and self.state == "completed":
            return "completed"
        return "annotation" if self.stage == "annotation" else "validation"


@dataclass
class Request:
    """A background request ("rq job") as `/api/requests/{id}` reports it."""

    id: str
    type: str
    target: str
    owner_id: int
    status: str = "finished"
    message: str = ""
    project_id: int | None = None
    task_id: int | None = None
    job_id: int | None = None
    format: str | None = None
    result_url: str | None = None
    result_id: int | None = None
    result_file: bytes | None = None
    result_filename: str | None = None
    created: datetime = field(default_factory=now)


@dataclass
class Webhook:
    id: int
    target_url: str
    type: str
    events: list[str]
    owner_id: int
    project_id: int | None
    secret: str = ""
    description: str = ""
    is_active: bool = True
    enable_ssl: bool = True
    content_type: str = "application/json"
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    created: datetime = field(default_factory=now)
    updated: datetime = field(default_factory=now)


@dataclass
class Upload:
    """Files received for one task or annotation upload before Upload-Finish."""

    files: dict[str, bytes] = field(default_factory=dict)
    tus: dict[str, dict[str, Any]] = field(default_factory=dict)


class Store:
    """All server state; take `store.lock` around any read-modify-write."""

    def __init__(self, users: dict[str, str]) -> None:
        self.lock = threading.RLock()
        self.users = {u.id: u for u in (User(i, n, p) for i, (n, p) in enumerate(users.items(), 1))}
        self.sessions: dict[str, int] = {}
        self.projects: dict[int, Project] = {}
        self.tasks: dict[int, Task] = {}
        self.jobs: dict[int, Job] = {}
        self.labels: dict[int, Label] = {}
        self.shapes: dict[int, list[dict[str, Any]]] = {}  # task id -> shapes
        self.versions: dict[int, int] = {}  # task id -> annotation version
        self.requests: dict[str, Request] = {}
        self.webhooks: dict[int, Webhook] = {}
        self.uploads: dict[str, Upload] = {}
        self.functions: dict[str, dict[str, Any]] = {}  # Nuclio function id -> CVAT's description
        self._counters: dict[str, itertools.count] = {}

    def next_id(self, kind: str) -> int:
        """Per-kind ids starting at 1, as a fresh CVAT database would hand out."""
        with self.lock:
            counter = self._counters.setdefault(kind, itertools.count(1))
            return next(counter)

    def user_by_name(self, username: str) -> User | None:
        return next((u for u in self.users.values() if u.username == username), None)

    def task_jobs(self, task_id: int) -> list[Job]:
        return sorted((j for j in self.jobs.values() if j.task_id == task_id), key=lambda j: j.id)

    def remove_task(self, task_id: int) -> None:
        """Delete a task with its jobs and annotations."""
        with self.lock:
            for job in self.task_jobs(task_id):
                del self.jobs[job.id]
            self.shapes.pop(task_id, None)
            del self.tasks[task_id]

    def task_labels(self, task: Task) -> list[Label]:
        """Tasks in a project share the project's labels, as in CVAT."""
        if task.project_id is not None and task.project_id in self.projects:
            return self.projects[task.project_id].labels
        return task.labels


def assign(obj: Any, body: dict[str, Any], names: tuple[str, ...]) -> None:
    """Copy the writable fields present in a PATCH body onto the object; stamp the update."""
    for name in names:
        if name in body:
            setattr(obj, name, body[name])
    obj.updated = now()


def lookup(table: dict[int, T], obj_id: int, what: str) -> T:
    """The object with this id, or CVAT's 404 naming its kind."""
    from .errors import not_found

    found = table.get(obj_id)
    if found is None:
        raise not_found(what)
    return found


def current_store() -> Store:
    """The store of the app serving this request."""
    return current_app.config["CVAT_STORE"]
