"""The route of one answer: the privacy of what its prompt would carry, and the policy's verdict.

The policy itself is ``models/llm/routing.py`` (plain functions); this gathers its inputs from the
database: the privacy level of every document a passage comes from, of the asset whose readings
and findings are given, of the assets of the similar past incidents in the prompt, and of the
conversation's earlier answers (a follow-up's prompt carries the earlier turns).
"""
from __future__ import annotations

from django.conf import settings

from apps.chat.models import Conversation, Message
from models.llm.routing import RESTRICTED, Evidence, Route, privacy_max, route_choose


def answer_evidence(*, conversation: Conversation, answer: Message, passages, live, incidents: list[dict]) -> list[Evidence]:
    """Every piece of evidence the prompt of ``answer`` may carry, with its privacy level.

    Levels are read now, not from the index: a document made restricted in the admin is
    restricted from the next question on. A passage whose document is gone counts as restricted
    (its level cannot be known), as does anything of an unknown level.
    """
    from apps.assets.models import Asset
    from apps.knowledge.models import Document

    default = settings.NANOSENTRI_DEFAULT_PRIVACY
    evidence: list[Evidence] = []
    ids = {p.document_id for p in passages}
    documents = {d.pk: d for d in Document.objects.filter(pk__in=ids).only("pk", "original_name", "privacy")}
    for p in passages:
        document = documents.get(p.document_id)
        if document is None:
            evidence.append(Evidence(RESTRICTED, f"a passage of “{p.file_name}”, no longer in the library"))
        else:
            evidence.append(Evidence(document.privacy, f"manual “{document.original_name}”"))

    asset_ids = set()
    if live is not None:
        if live.asset:
            asset_ids.add(live.asset)
        else:  # pasted log text without an asset: the technician's own words, like the question
            evidence.append(Evidence(default, "pasted readings"))
    asset_ids |= {item.get("asset") for item in incidents if item.get("asset")}
    levels = dict(Asset.objects.filter(asset_id__in=asset_ids).values_list("asset_id", "privacy"))
    if live is not None and live.asset:
        evidence.append(Evidence(levels.get(live.asset, default), f"readings of {live.asset}"))
    for item in incidents:
        asset = item.get("asset")
        level = levels.get(asset, default) if asset else default
        evidence.append(Evidence(level, f"incident #{item.get('id')}" + (f" of {asset}" if asset else "")))

    evidence += _history_evidence(conversation, answer)
    return evidence


def _history_evidence(conversation: Conversation, answer: Message) -> list[Evidence]:
    """The earlier answers of the conversation, as one piece of evidence per level they reach:
    what they recorded, and what their citations and readings are now."""
    from apps.assets.models import Asset
    from apps.knowledge.models import Document

    earlier = Message.objects.filter(conversation=conversation, role=Message.Role.ASSISTANT).exclude(pk=answer.pk)
    rows = list(earlier.values_list("privacy", "live_context"))
    if not rows:
        return []
    levels = [privacy for privacy, _ in rows if privacy]
    levels += Document.objects.filter(citation__message__in=earlier).values_list("privacy", flat=True).distinct()
    assets = {(live or {}).get("asset") for _, live in rows} - {None, ""}
    if assets:
        levels += Asset.objects.filter(asset_id__in=assets).values_list("privacy", flat=True).distinct()
    if not levels:
        return []
    return [Evidence(privacy_max(levels), "an earlier answer in this conversation")]


def answer_route(*, conversation: Conversation, evidence: list[Evidence]) -> Route:
    from models.llm import get_site_model, site_health

    site = get_site_model()
    return route_choose(
        evidence=evidence,
        local_only=conversation.local_only,
        site_configured=site is not None,
        site_healthy=site is not None and site_health().healthy(),
    )


def evidence_privacy(evidence: list[Evidence]) -> str:
    """The most private level among ``evidence`` (``""`` when there is none)."""
    return privacy_max([e.level for e in evidence], default="")
