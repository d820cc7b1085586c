"""The JSON API for CMMS integration, mounted at /api/v1/ (docs/api.md).

Every operation needs ``Authorization: Bearer <token>`` (``manage.py create_api_token``); the
token acts as its user. The schema is at /api/v1/openapi.json and the interactive docs at
/api/v1/docs, served from django-ninja's bundled static files (no CDN: the app is offline).
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent, ValidationError
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI, Swagger
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as RequestValidationError

from apps.api import ask, documents, incidents
from apps.api.auth import ApiTokenAuth
from apps.chat.ask_request import AskRefused, UnknownAsset

api = NinjaAPI(
    title="NanoSentri API",
    version="1",
    description="Incidents and troubleshooting answers for CMMS integration. Authenticate with "
    "`Authorization: Bearer <token>`; create a token with `manage.py create_api_token <username>`.",
    urls_namespace="api-v1",
    auth=ApiTokenAuth(),
    # validatorUrl None: Swagger UI would otherwise send the schema to validator.swagger.io.
    docs=Swagger(settings={"validatorUrl": None}),
)
api.add_router("", incidents.router)
api.add_router("", ask.router)
api.add_router("", documents.router)


def _unprocessable(request, detail: str, errors: dict[str, list[str]]):
    return api.create_response(request, {"detail": detail, "errors": errors}, status=422)


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    response = api.create_response(
        request, {"detail": "Send 'Authorization: Bearer <token>' with a valid API token."}, status=401
    )
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(RequestDataTooBig)
def _too_big(request, exc):
    return api.create_response(request, {"detail": "The request body is too large."}, status=413)


@api.exception_handler(TooManyFilesSent)
def _too_many_files(request, exc):
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
    return api.create_response(
        request, {"detail": f"Too many files in one request: at most {limit}; send them in smaller batches."}, status=413
    )


@api.exception_handler(MultiPartParserError)
def _unreadable_multipart(request, exc):
    return api.create_response(request, {"detail": f"The multipart body cannot be read: {exc}"}, status=400)


@api.exception_handler(RequestValidationError)
def _invalid_request(request, exc):
    """Pydantic's errors as {field: [messages]}, the same shape as the services' errors."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors:
        loc = [str(part) for part in error.get("loc", ())]
        # ("body", "payload", "title") → "title"; ("query", "limit") → "limit"
        where = loc[2:] if loc[:1] == ["body"] else loc[1:]
        errors.setdefault(".".join(where) or "__all__", []).append(error.get("msg", "invalid"))
    return _unprocessable(request, "The request is not valid: " + "; ".join(
        f"{field}: {' '.join(msgs)}" for field, msgs in errors.items()), errors)


@api.exception_handler(ValidationError)
def _invalid_incident(request, exc: ValidationError):
    errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
    return _unprocessable(request, " ".join(m for msgs in errors.values() for m in msgs), errors)


@api.exception_handler(AskRefused)
def _ask_refused(request, exc: AskRefused):
    if isinstance(exc, UnknownAsset):
        detail = f"Unknown asset {exc.value!r}."
        return _unprocessable(request, detail, {"asset": [detail]})
    return _unprocessable(request, f"Invalid {exc.field}: {exc}.", {exc.field: [str(exc)]})
