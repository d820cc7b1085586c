"""The asset pages: a list, a detail page, and the JSON the detail page polls."""
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.accounts.decorators import perm_required
from apps.assets import presenters
from apps.assets.models import Asset


def _asset(asset_id: str) -> Asset:
    return get_object_or_404(Asset.objects.select_related("device_type", "site"), asset_id=asset_id)


@require_GET
@perm_required("assets.view_asset")
def asset_list(request):
    return render(request, "assets/list.html", {"assets": presenters.asset_list()})


@require_GET
@perm_required("assets.view_asset")
def asset_detail(request, asset_id):
    asset = _asset(asset_id)
    context = presenters.asset_page(asset, hours=presenters.hours_param(request.GET.get("hours")))
    # The incident history comes from incidents' template tag: assets sit below incidents.
    return render(request, "assets/asset.html", context)


@never_cache
@require_GET
@perm_required("assets.view_asset")
def asset_live(request, asset_id):
    asset = _asset(asset_id)
    try:
        since = presenters.since_param(request.GET.get("since"))
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    hours = presenters.hours_param(request.GET.get("hours"))
    return JsonResponse(presenters.asset_live(asset, since=since, hours=hours))
