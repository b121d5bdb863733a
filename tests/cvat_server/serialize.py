"""Objects → JSON in the shapes CVAT's serializers produce (and cvat-sdk's models expect)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import request

from .state import Job, Label, Project, Request, Store, Task, User, Webhook


def url(path: str) -> str:
    """Absolute URL on this server, as DRF's hyperlinks are."""
    return request.host_url.rstrip("/") + path


def date(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def user(u: User | None) -> dict[str, Any] | None:
    """CVAT's BasicUser."""
    if u is None:
        return None
    return {
        "url": url(f"/api/users/{u.id}"),
        "id": u.id,
        "username": u.username,
        "first_name": "",
        "last_name": "",
    }


def full_user(u: User) -> dict[str, Any]:
    """CVAT's User (what `/api/users/self` returns)."""
    return {
        **user(u),
        "email": f"{u.username}@localhost",
        "groups": ["admin"] if u.id == 1 else ["user"],
        "is_staff": u.id == 1,
        "is_superuser": u.id == 1,
        "is_active": True,
        "last_login": None,
        "date_joined": "2024-01-01T00:00:00Z",
    }


def storage(obj_id: int) -> dict[str, Any]:
    return {"id": obj_id, "location": "local", "cloud_storage_id": None}


def sublabel(sub: Label) -> dict[str, Any]:
    return {
        "id": sub.id,
        "name": sub.name,
        "color": sub.color,
        "attributes": sub.attributes,
        "type": sub.type,
        "has_parent": True,
    }


def label(lbl: Label, *, project_id: int | None, task_id: int | None) -> dict[str, Any]:
    return {
        "id": lbl.id,
        "name": lbl.name,
        "color": lbl.color,
        "attributes": lbl.attributes,
        "type": lbl.type,
        "svg": lbl.svg,
        "sublabels": [sublabel(s) for s in lbl.sublabels],
        "project_id": project_id,
        "task_id": task_id,
        "parent_id": None,
        "has_parent": False,
    }


def project(store: Store, p: Project) -> dict[str, Any]:
    tasks = [t for t in store.tasks.values() if t.project_id == p.id]
    return {
        "url": url(f"/api/projects/{p.id}"),
        "id": p.id,
        "name": p.name,
        "owner": user(store.users.get(p.owner_id)),
        "assignee": user(store.users.get(p.assignee_id)),
        "guide_id": None,
        "bug_tracker": p.bug_tracker,
        "task_subsets": sorted({t.subset for t in tasks if t.subset}),
        "created_date": date(p.created),
        "updated_date": date(p.updated),
        "status": "annotation",
        "dimension": "2d" if tasks else None,
        "organization": None,
        "organization_id": None,
        "target_storage": storage(p.id),
        "source_storage": storage(p.id),
        "assignee_updated_date": None,
        "tasks": {"count": len(tasks), "url": url(f"/api/tasks?project_id={p.id}")},
        "labels": {"url": url(f"/api/labels?project_id={p.id}")},
    }


def task(store: Store, t: Task) -> dict[str, Any]:
    jobs = store.task_jobs(t.id)
    proj = store.projects.get(t.project_id) if t.project_id else None
    has_data = bool(t.frames)
    return {
        "url": url(f"/api/tasks/{t.id}"),
        "id": t.id,
        "name": t.name,
        "project_id": t.project_id,
        "project_name": proj.name if proj else None,
        "mode": "annotation" if has_data else "",
        "owner": user(store.users.get(t.owner_id)),
        "assignee": user(store.users.get(t.assignee_id)),
        "bug_tracker": t.bug_tracker,
        "created_date": date(t.created),
        "updated_date": date(t.updated),
        "overlap": t.overlap,
        "segment_size": t.segment_size,
        "status": "annotation",
        "data_chunk_size": t.chunk_size,
        "data_compressed_chunk_type": "imageset" if has_data else None,
        "data_original_chunk_type": "imageset" if has_data else None,
        "data_cloud_storage_id": None,
        "guide_id": None,
        "size": len(t.frames),
        "image_quality": t.image_quality,
        "data": t.data_id,
        "dimension": "2d",
        "subset": t.subset,
        "organization": None,
        "organization_id": None,
        "target_storage": storage(t.id),
        "source_storage": storage(t.id),
        "assignee_updated_date": None,
        "validation_mode": None,
        "jobs": {
            "count": len(jobs),
            "completed": sum(j.state == "completed" for j in jobs),
            "validation": sum(j.stage == "validation" for j in jobs),
            "url": url(f"/api/jobs?task_id={t.id}"),
        },
        "labels": {"url": url(f"/api/labels?task_id={t.id}")},
    }


def job(store: Store, j: Job) -> dict[str, Any]:
    t = store.tasks[j.task_id]
    proj = store.projects.get(t.project_id) if t.project_id else None
    return {
        "url": url(f"/api/jobs/{j.id}"),
        "id": j.id,
        "task_id": t.id,
        "task_name": t.name,
        "project_id": t.project_id,
        "project_name": proj.name if proj else None,
        "assignee": user(store.users.get(j.assignee_id)),
        "guide_id": None,
        "dimension": "2d",
        "bug_tracker": t.bug_tracker or None,
        "status": j.status,
        "stage": j.stage,
        "state": j.state,
        "mode": "annotation",
        "frame_count": j.stop_frame - j.start_frame + 1,
        "start_frame": j.start_frame,
        "stop_frame": j.stop_frame,
        "data_chunk_size": t.chunk_size,
        "data_compressed_chunk_type": "imageset",
        "data_original_chunk_type": "imageset",
        "created_date": date(j.created),
        "updated_date": date(j.updated),
        "issues": {"count": 0, "url": url(f"/api/issues?job_id={j.id}")},
        "labels": {"url": url(f"/api/labels?job_id={j.id}")},
        "type": "annotation",
        "organization": None,
        "target_storage": storage(t.id),
        "source_storage": storage(t.id),
        "assignee_updated_date": date(j.assignee_updated),
        "parent_job_id": None,
        "replicas_count": 0,
    }


def bg_request(store: Store, r: Request) -> dict[str, Any]:
    owner = store.users[r.owner_id]
    done = r.status in ("finished", "failed")
    return {
        "id": r.id,
        "status": r.status,
        "message": r.message,
        "progress": 1.0 if done else 0.0,
        "operation": {
            "type": r.type,
            "target": r.target,
            "project_id": r.project_id,
            "task_id": r.task_id,
            "job_id": r.job_id,
            "org_id": None,
            "format": r.format,
            "function_id": None,
        },
        "created_date": date(r.created),
        "started_date": date(r.created),
        "finished_date": date(r.created) if done else None,
        "expiry_date": None,
        "owner": {"id": owner.id, "username": owner.username},
        "result_url": r.result_url,
        "result_id": r.result_id,
    }


def webhook(store: Store, w: Webhook) -> dict[str, Any]:
    data = {
        "id": w.id,
        "url": url(f"/api/webhooks/{w.id}"),
        "target_url": w.target_url,
        "description": w.description,
        "type": w.type,
        "content_type": w.content_type,
        "is_active": w.is_active,
        "enable_ssl": w.enable_ssl,
        "created_date": date(w.created),
        "updated_date": date(w.updated),
        "owner": user(store.users.get(w.owner_id)),
        "project_id": w.project_id,
        "organization": None,
        "events": w.events,
    }
    if w.deliveries:
        data["last_status"] = w.deliveries[-1]["status_code"]
        data["last_delivery_date"] = w.deliveries[-1]["updated_date"]
    return data


def paginated(items: list[dict[str, Any]]) -> dict[str, Any]:
    """DRF's page-number pagination, honouring `page` and `page_size`."""
    try:
        page = max(1, int(request.args.get("page", 1)))
        size = max(1, int(request.args.get("page_size", 10)))
    except ValueError:
        page, size = 1, 10
    start = (page - 1) * size
    args = request.args.to_dict()

    def page_url(n: int) -> str:
        return url(request.path) + "?" + urlencode({**args, "page": n})

    return {
        "count": len(items),
        "next": page_url(page + 1) if start + size < len(items) else None,
        "previous": page_url(page - 1) if page > 1 else None,
        "results": items[start : start + size],
    }
