from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.api.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token that acts as <username> (same role, same permissions). Prints it once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what will use it, e.g. 'Maximo sync'")
        parser.add_argument("--expires-days", type=int, help="expire after this many days (default: never)")

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"unknown user {options['username']!r}")
        if not user.is_active:
            raise CommandError(f"user {user.username!r} is inactive")
        expires_at = None
        if options["expires_days"] is not None:
            if options["expires_days"] < 1:
                raise CommandError("--expires-days must be at least 1")
            expires_at = timezone.now() + timedelta(days=options["expires_days"])
        token, secret = api_token_create(user=user, name=options["name"], expires_at=expires_at)
        # The secret alone on stdout, so scripts can capture it; the rest on stderr.
        self.stdout.write(secret)
        self.stderr.write(
            f"API token {token.prefix}… for {user.username}"
            + (f" ({token.name})" if token.name else "")
            + (f", expires {expires_at:%Y-%m-%d}" if expires_at else "")
            + ". It is not stored: copy it now. Send it as 'Authorization: Bearer <token>'."
        )
