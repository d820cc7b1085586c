"""/api/v1/incidents: list, read, create and update incidents as the token's user.

Visibility and editing follow the web app (apps.incidents.selectors); every write goes through
apps.incidents.services, so the audit trail names the token's user as the actor.
"""
from __future__ import annotations

import enum

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from ninja import Path, Query, Router, Status
from ninja.errors import AuthorizationError, HttpError

from apps.api.auth import permission_require
from apps.api.schemas import (
    AssetId,
    Error,
    IncidentCreate,
    IncidentOut,
    IncidentPage,
    IncidentPatch,
    Timestamp,
    ValidationErrorOut,
)
from apps.assets.models import Asset
from apps.incidents.models import Incident
from apps.incidents.selectors import incident_editable_by, incident_for, incidents_visible_to
from apps.incidents.services import incident_create, incident_update

router = Router(tags=["incidents"])

# Text fields that cannot be NULL in the database: "null" in a PATCH empties them.
_TEXT_FIELDS = {"title", "symptom", "failure_class", "cause", "remedy", "root_cause", "summary", "downtime_reason",
                "downtime_kind"}
MAX_OFFSET = 1_000_000_000
# The error bodies each kind of operation may answer with (documented in the OpenAPI schema).
_READ_ERRORS = {401: Error, 403: Error, 422: ValidationErrorOut}
_WRITE_ERRORS = {400: Error, 413: Error, **_READ_ERRORS}


def _incident_id():
    return Path(..., ge=1, le=2**63 - 1, description="the incident's id")


def _incident_visible(user, incident_id: int) -> Incident:
    try:
        return incident_for(user, incident_id)
    except Incident.DoesNotExist:
        raise HttpError(404, f"No incident #{incident_id}, or it is not visible to you.") from None


def _fields(data: dict) -> dict:
    """The request's fields as the incident services take them (objects for asset and assignee)."""
    fields = {}
    for name, value in data.items():
        if isinstance(value, enum.Enum):
            value = value.value
        if name in _TEXT_FIELDS and value is None:
            value = ""
        fields[name] = value
    if fields.get("asset") is not None:
        asset = Asset.objects.filter(asset_id=fields["asset"]).first()
        if asset is None:
            raise ValidationError({"asset": f"Unknown asset {fields['asset']!r}."})
        fields["asset"] = asset
    if fields.get("assignee") is not None:
        assignee = get_user_model().objects.filter(username=fields["assignee"], is_active=True).first()
        if assignee is None:
            raise ValidationError({"assignee": f"Unknown user {fields['assignee']!r}."})
        fields["assignee"] = assignee
    return fields


def _reloaded(incident: Incident) -> Incident:
    return Incident.objects.select_related("asset", "reporter", "assignee").get(pk=incident.pk)


@router.get(
    "/incidents",
    response={200: IncidentPage, **_READ_ERRORS},
    summary="List incidents",
    operation_id="listIncidents",
    description="The incidents visible to the token's user (a technician: their own and their assets'; "
    "supervisors and admins: all), newest first.",
)
def incident_list(
    request,
    status: list[Incident.Status] = Query(None, description="only these statuses (repeat for several)"),
    priority: list[Incident.Priority] = Query(None, description="only these priorities (repeat for several)"),
    asset: AssetId = Query(None, description="only this asset's incidents (asset id)"),
    updated_since: Timestamp = Query(None, description="only incidents changed at or after this time"),
    limit: int = Query(50, ge=1, le=200, description="page size"),
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="incidents to skip"),
):
    permission_require(request.auth.user, "incidents.view_incident")
    qs = incidents_visible_to(request.auth.user)
    if status:
        qs = qs.filter(status__in=[s.value for s in status])
    if priority:
        qs = qs.filter(priority__in=[p.value for p in priority])
    if asset is not None:
        qs = qs.filter(asset__asset_id=asset)
    if updated_since is not None:
        qs = qs.filter(updated__gte=updated_since)
    return {"total": qs.count(), "limit": limit, "offset": offset, "items": list(qs[offset : offset + limit])}


@router.get(
    "/incidents/{incident_id}",
    response={200: IncidentOut, 404: Error, **_READ_ERRORS},
    summary="Get one incident",
    operation_id="getIncident",
)
def incident_detail(request, incident_id: int = _incident_id()):
    permission_require(request.auth.user, "incidents.view_incident")
    return _incident_visible(request.auth.user, incident_id)


@router.post(
    "/incidents",
    response={201: IncidentOut, **_WRITE_ERRORS},
    summary="Create an incident",
    operation_id="createIncident",
    description="The token's user is the reporter. Resolving or closing needs a cause and a remedy.",
)
def incident_add(request, payload: IncidentCreate):
    user = request.auth.user
    permission_require(user, "incidents.add_incident")
    fields = _fields(payload.model_dump(exclude={"note"}))
    incident = incident_create(reporter=user, note=payload.note, **fields)
    return Status(201, _reloaded(incident))


@router.patch(
    "/incidents/{incident_id}",
    response={200: IncidentOut, 404: Error, **_WRITE_ERRORS},
    summary="Update an incident",
    operation_id="updateIncident",
    description="Changes only the fields sent, status moves included (open → in_progress → resolved → closed, "
    "and back). Each change is recorded in the incident's audit trail with the token's user as the actor.",
)
def incident_change(request, payload: IncidentPatch, incident_id: int = _incident_id()):
    user = request.auth.user
    permission_require(user, "incidents.change_incident")
    incident = _incident_visible(user, incident_id)
    if not incident_editable_by(user, incident):
        raise AuthorizationError(message="You may see this incident but not change it.")
    data = payload.model_dump(exclude_unset=True)
    note = data.pop("note", None) or ""
    incident = incident_update(incident=incident, actor=user, note=note, **_fields(data))
    return _reloaded(incident)
