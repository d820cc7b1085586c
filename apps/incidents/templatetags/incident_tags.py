"""Incidents shown on the pages of apps below incidents (the asset page, the chat).

Those apps do not import incidents (tests/test_layering.py); their templates ask for the
incidents here, for the user of the request.
"""
from django import template

from apps.incidents import selectors

register = template.Library()


@register.simple_tag(takes_context=True)
def asset_incidents(context, asset):
    """``{% asset_incidents asset as incidents %}``: the asset's latest incidents the user may see."""
    return selectors.asset_incident_history(context["request"].user, asset)


@register.simple_tag(takes_context=True)
def conversation_incidents(context, conversation):
    """``{% conversation_incidents current as incidents %}``: incidents already opened from this chat."""
    return selectors.conversation_incidents(context["request"].user, conversation)
