from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _roles_after_migrate(sender, **kwargs):
    from apps.accounts.services import roles_ensure

    roles_ensure(using=kwargs.get("using", "default"))


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self):
        # After every migrate (and every test-database flush) the role groups exist and hold
        # exactly their permissions. Connected without a sender: it must run after the
        # incidents and chat apps created their permissions.
        post_migrate.connect(_roles_after_migrate, dispatch_uid="nanosentri.roles_ensure")
