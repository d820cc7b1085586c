from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect

from apps.accounts.roles import is_admin


@login_required
def home(request):
    return redirect("knowledge:documents" if is_admin(request.user) else "chat:chat")


def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    from apps.chat.warmup import state

    return JsonResponse({"status": "ok", "models": state["models"]})
