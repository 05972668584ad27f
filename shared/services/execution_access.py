"""Who may see an execution (run) or a message, its package and its error files: one decision for every reader.

The rule (issue 17, Deliver 5; PROTOCOL §8.3-§8.4 name only the job-level checks):

- an **admin** (the admin role, or an application listed in AUTH_ADMIN_APPS) sees everything;
- an application with an **enabled entry in the authorization policy of the job that ran it** sees it
  (the job's policy is the only per-application grant the configuration model has; a job's `company`
  is its legal entity, and None means every legal entity, so the job's own partners are always within
  it). The job itself may be disabled: disabling a job stops new work, not the polling of past work;
- the **application that started it** (`RequestedBy`, recorded when ImportFromPackage, ExportToPackage
  or enqueue created it) sees it while it still holds an enabled policy entry on an enabled job of the
  same data project whose legal entity covers the execution's (its job's `company`; a job of every
  legal entity covers only jobs of every legal entity). So a starter removed from the job keeps its
  history only where it could start the same execution again.

Nothing else: being on *another* job of the same project no longer grants anything. That is the hole
issue 17 found: a partner refused an export for a legal entity fetched another partner's package of
that legal entity, because execution reads were authorized per data project.

Callers answer a refusal exactly as they answer an unknown ID (same status, code and message), so an
ID reveals nothing about executions the caller may not see.
"""

from __future__ import annotations

from shared import settings
from shared.auth.principal import Principal
from shared.domain.config import Job

# The run/message property holding the lower-case application ID of the caller that created it.
REQUESTED_BY = "RequestedBy"


def is_admin(principal: Principal) -> bool:
    return principal.is_admin(settings.admin_role(), settings.admin_apps())


def requested_by(principal: Principal) -> str | None:
    """The value to store in REQUESTED_BY for an execution or message this caller creates."""
    return (principal.app_id or "").lower() or None


def _covers(grant: Job, job: Job) -> bool:
    """Whether a job the caller is on reaches the legal entity of the job that ran the execution."""
    return grant.legal_entity is None or grant.legal_entity == job.legal_entity


def may_see(
    principal: Principal,
    *,
    job_id: str | None,
    starter: str | None,
    config,
    legal_entity: str | None = None,
) -> bool:
    """Whether the caller may see an execution or message that the job `job_id` ran.

    `starter`: the REQUESTED_BY of the run or message (None when a schedule started it).
    `config`: the ConfigService (find_job, list_jobs). A job that no longer exists is visible to
    admins only: its legal entity is no longer known. `legal_entity`: the execution's own legal entity
    when it has one (an ExportToPackage or ImportFromPackage with legalEntityId), else the job's counts.
    A starter with an enabled application registration (app_access) also sees its own execution while
    the registration still lets it start it: the operation's capability in that legal entity.
    """
    if is_admin(principal):
        return True
    app = (principal.app_id or "").lower()
    job = config.find_job(job_id) if job_id else None
    if not app or job is None:
        return False
    if job.allows(app):
        return True
    if not starter or starter.lower() != app:
        return False
    if getattr(job, "operation", None) is not None:
        return True  # a definition group's group job (no policy): its executions are their starter's
    if _registered_starter_may(principal, job, legal_entity, config):
        return True
    project = job.project.casefold()
    return any(
        j.enabled and j.allows(app) and j.project.casefold() == project and _covers(j, job)
        for j in config.cached_jobs()
    )


def _registered_starter_may(principal: Principal, job: Job, legal_entity: str | None, config) -> bool:
    from shared.errors import NotFoundError
    from shared.services import app_access

    if not app_access.registered(principal):
        return False
    try:
        operation = config.project_of(job).operation
    except NotFoundError:
        return False
    capability = app_access.EXPORT if operation == "export" else app_access.IMPORT
    legal = (legal_entity or job.legal_entity or "").lower()
    if legal:
        return app_access.may(principal, capability, legal)
    return app_access.may(principal, capability) and app_access.allowed_legal_entities(principal) is None
