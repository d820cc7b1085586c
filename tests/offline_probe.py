"""Run ingest + ask in a fresh process with every non-loopback connection refused and recorded.

Used by test_integration_offline.py: prints one JSON line with the attempts and the result.
Models load inside the guard, so a hub check or telemetry ping at load time is caught too.
"""
import ipaddress
import json
import os
import socket
import sys
import tempfile

attempts = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_local(host) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        attempts.append(f"connect {address[0]}:{address[1]}")
        raise OSError(f"offline guard: connection to {address} refused")


def guarded_connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def guarded_connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


def guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        attempts.append(f"resolve {host}")
        raise socket.gaierror(f"offline guard: lookup of {host} refused")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = guarded_connect
socket.socket.connect_ex = guarded_connect_ex
socket.getaddrinfo = guarded_getaddrinfo


def main(manual: str) -> None:
    data_dir = tempfile.mkdtemp(prefix="nanosentri-offline-")
    os.environ.update(
        NANOSENTRI_DATA_DIR=data_dir,
        NANOSENTRI_LLM_BACKEND="llamacpp",
        NANOSENTRI_EMBEDDING_BACKEND="sentence-transformers",
        NANOSENTRI_VECTOR_STORE="chroma",
        DJANGO_SETTINGS_MODULE="nanosentri_site.settings",
    )
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from apps.chat import services as chat
    from apps.knowledge.services import document_add_path, document_ingest

    document, _ = document_add_path(path=manual)
    document = document_ingest(document_id=document.pk)
    conversation = chat.conversation_for(user=None, title="offline")
    events = list(chat.answer_stream(question="What does ERROR HIGH TEMP mean?", conversation=conversation))
    citations = next(e for e in events if e["type"] == "citations")["items"]
    print(json.dumps({
        "attempts": attempts,
        "status": document.status,
        "answer_status": events[-1]["status"],
        "tokens": sum(e["type"] == "token" for e in events),
        "cited_page": citations[0]["page"] if citations else None,
        "env": {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ANONYMIZED_TELEMETRY", "TIKTOKEN_CACHE_DIR")},
    }))


if __name__ == "__main__":
    main(sys.argv[1])
