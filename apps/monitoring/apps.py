from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """/metrics for Prometheus and the admin's System page: the same figures, read at request time.

    It sits above the other apps (it reads chat, knowledge and assets); nothing imports it.
    """

    name = "apps.monitoring"
    label = "monitoring"
