"""``{% demo_banner %}``: the line every page shows while the demo site's simulated stations exist."""
from django import template

from apps.assets.models import Asset

register = template.Library()


@register.inclusion_tag("assets/_demo_banner.html")
def demo_banner():
    return {"demo": Asset.objects.filter(is_demo=True).exists()}
