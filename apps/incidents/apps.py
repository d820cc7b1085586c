from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "apps.incidents"
    label = "incidents"
    verbose_name = "Incidents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps.chat.extensions import IncidentReads, incident_reads_register
        from apps.incidents import selectors

        # Looked up at each call (not bound now), so that tests can patch the selectors.
        incident_reads_register(IncidentReads(
            similar=lambda question, **kwargs: selectors.incidents_similar(question, **kwargs),
            visible_ids=lambda user, ids: set(
                selectors.incidents_visible_to(user).filter(pk__in=ids).values_list("pk", flat=True)
            ),
            search_text=lambda question: selectors.incident_search_text(question),
        ))
