"""Bearer-token authentication: the token acts as its user, with that user's role permissions."""
from __future__ import annotations

from ninja.errors import AuthorizationError
from ninja.security import HttpBearer

from apps.api.services import api_token_authenticate


class ApiTokenAuth(HttpBearer):
    def authenticate(self, request, token: str):
        api_token = api_token_authenticate(token.strip())
        if api_token is None:
            return None  # ninja answers 401
        request.user = api_token.user  # permission checks and services see the token's user
        return api_token


def permission_require(user, perm: str) -> None:
    """403 unless ``user`` holds ``perm`` through their role (users without a role hold none)."""
    if not user.has_perm(perm):
        raise AuthorizationError(message="Your role does not allow this.")
