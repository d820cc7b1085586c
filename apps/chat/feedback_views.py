"""Feedback on answers: the JSON vote endpoint of the chat page and the supervisors' review queue."""
from __future__ import annotations

import json
from functools import wraps

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.decorators import perm_required
from apps.chat import feedback_services as services
from apps.chat import selectors
from apps.chat.models import AnswerFeedback

REVIEW_PAGE_SIZE = 20
_FILTERS = {"unreviewed": False, "reviewed": True, "all": None}


def _json_perm_required(perm: str):
    """Like perm_required, but answers in JSON: 401 when signed out, 403 without ``perm``."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return JsonResponse({"error": "You are signed out: log in again.", "code": "login_required"}, status=401)
            if not request.user.has_perm(perm):
                return JsonResponse({"error": "You may not rate answers.", "code": "forbidden"}, status=403)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def _payload(request) -> dict:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            raise services.InvalidFeedback("the request is not valid JSON") from None
        if not isinstance(data, dict):
            raise services.InvalidFeedback("the request must be a JSON object")
        return data
    return request.POST.dict()


@_json_perm_required("chat.add_answerfeedback")
@require_POST
def feedback(request, pk):
    """POST {rating: "up"|"down"|"none", comment}: set, change or take back the user's vote."""
    message = selectors.message_with_conversation(pk=pk)
    try:
        data = _payload(request)
        if message is None:
            raise services.FeedbackNotAllowed
        services.feedback_set(
            user=request.user, message=message, rating=data.get("rating"), comment=data.get("comment", "")
        )
    except services.FeedbackNotAllowed:
        # Someone else's conversation looks like no conversation at all (as on the chat page).
        return JsonResponse({"error": "No such answer.", "code": "not_found"}, status=404)
    except services.InvalidFeedback as exc:
        return JsonResponse({"error": str(exc), "code": "invalid", "field": exc.field}, status=400)
    return JsonResponse(selectors.feedback_state(message=message, user=request.user))


@perm_required("chat.review_feedback")
def review(request):
    """Thumbs-down answers for supervisors: unreviewed first, filterable, paginated."""
    status = request.GET.get("status", "unreviewed")
    if status not in _FILTERS:
        status = "unreviewed"
    page = Paginator(selectors.feedback_review_queue(reviewed=_FILTERS[status]), REVIEW_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "chat/review.html",
        {
            "page": page,
            "items": [_item(f) for f in page.object_list],
            "status": status,
            "filters": [("unreviewed", "Unreviewed"), ("reviewed", "Reviewed"), ("all", "All")],
            "unreviewed_count": selectors.feedback_unreviewed_count(),
            "here": request.get_full_path(),
        },
    )


@perm_required("chat.review_feedback")
@require_http_methods(["GET", "POST"])
def review_item(request, pk):
    """One thumbs-down; POST {note, next} marks it reviewed."""
    feedback = get_object_or_404(selectors.feedback_review_queue(), pk=pk)
    note_error, note = "", None
    if request.method == "POST":
        note = request.POST.get("note", "")
        try:
            services.feedback_review(feedback=feedback, reviewer=request.user, note=note)
        except services.InvalidFeedback as exc:
            note_error = str(exc)
        else:
            messages.success(request, "Marked as reviewed.")
            next_url = request.POST.get("next", "")
            if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, require_https=request.is_secure()):
                next_url = reverse("chat:review")
            return redirect(next_url)
    item = _item(feedback)
    if note is not None:
        item["note_value"] = note  # what was typed is shown again, never lost
    item["note_error"] = note_error
    return render(
        request,
        "chat/review_item.html",
        {"item": item, "here": request.POST.get("next") or request.get_full_path()},
        status=400 if note_error else 200,
    )


def _item(feedback: AnswerFeedback) -> dict:
    answer = feedback.message
    question = getattr(feedback, "question", None)
    return {
        "feedback": feedback,
        "answer": answer,
        "question": question if question is not None else selectors.question_for(answer),
        # Several answers share the page: their [n] links point at their own citations.
        "answer_html": answer.answer_html,
        "citations": list(answer.citations.all()),
        "note_value": feedback.review_note,
        "note_error": "",
        "incident_new_url": _incident_new_url(answer.pk, feedback.pk),
        "incident_url": _incident_url(feedback.incident_id) if feedback.incident_id else "",
    }


def _incident_new_url(message_id: int, feedback_id: int) -> str:
    try:
        base = reverse("incidents:new")
    except NoReverseMatch:  # the incident form is another page's job; its address is fixed
        base = "/incidents/new/"
    return f"{base}?message={message_id}&feedback={feedback_id}"


def _incident_url(incident_id: int) -> str:
    try:
        return reverse("incidents:detail", args=[incident_id])
    except NoReverseMatch:
        return f"/incidents/{incident_id}/"
