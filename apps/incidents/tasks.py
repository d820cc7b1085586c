from celery import shared_task


@shared_task(name="incidents.index_incident", acks_late=True)
def incident_index_task(incident_id: int) -> None:
    """Embed a resolved/closed incident for "similar past incidents" (or drop it when reopened)."""
    from apps.incidents.services import incident_index

    incident_index(incident_id=incident_id)
