from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect

from apps.accounts.roles import is_admin


@login_required
def home(request):
    """Each role starts where its work is; an account without a role is told so."""
    if is_admin(request.user):
        return redirect("knowledge:documents")
    if request.user.has_perm("incidents.view_dashboard"):
        return redirect("incidents:dashboard")
    if request.user.has_perm("chat.add_conversation"):
        return redirect("chat:chat")
    raise PermissionDenied


def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    from apps.chat.warmup import state

    return JsonResponse({"status": "ok", "models": state["models"]})
