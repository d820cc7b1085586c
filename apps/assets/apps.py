from django.apps import AppConfig


class AssetsConfig(AppConfig):
    name = "apps.assets"
    label = "assets"
    verbose_name = "Assets and telemetry"

    def ready(self):
        from apps.assets.logfiles import readings_from_log_document
        from apps.knowledge.signals import log_document_ingesting

        log_document_ingesting.connect(readings_from_log_document, dispatch_uid="assets.readings_from_log_document")
