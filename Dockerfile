# syntax=docker/dockerfile:1
# NanoSentri image: one image for the web (Daphne) and worker (Celery) services.
# See docker-compose.yml. Build: docker compose build

# ---- build stage: compilers for llama-cpp-python, the venv built by scripts/install.sh
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake tesseract-ocr tesseract-ocr-eng \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# /opt/wheels (the local CPU torch wheel) doesn't exist in here: take torch's CPU
# build from PyTorch's own index instead of PyPI's multi-GB CUDA build.
ENV TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple" \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# llama.cpp is tuned for the build machine's CPU by default; for an image that
# runs on other CPUs pass e.g. --build-arg CMAKE_ARGS="-DGGML_NATIVE=OFF".
ARG CMAKE_ARGS=""
ENV CMAKE_ARGS=${CMAKE_ARGS}
COPY scripts/install.sh scripts/install.sh
COPY requirements/ requirements/
RUN --mount=type=cache,target=/root/.cache/pip scripts/install.sh

# ---- runtime stage
FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tesseract-ocr tesseract-ocr-eng \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 nanosentri \
    && mkdir /data && chown nanosentri:nanosentri /data
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY . .
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NANOSENTRI_DATA_DIR=/data
USER nanosentri
VOLUME ["/data"]
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && exec daphne -b 0.0.0.0 -p 8000 nanosentri_site.asgi:application"]
