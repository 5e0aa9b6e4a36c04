# syntax=docker/dockerfile:1
# The bus's image: one image for every Ray node. As a Ray head it runs Ray Serve with the HTTP
# API (deploy/serve-config.yaml, `import_path: serve.deploy:app_builder`) and the Jobs API; as a
# Ray worker it runs partition owners, subscription dispatchers and Serve replicas. Kafka and
# Redis are external (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL), so there is no Java in here.
#
#   docker build -t event-streaming-bus:0.1.0 .
#   docker compose -f deploy/docker-compose.yaml up        (Kafka + Redis + the bus)
#   kubectl apply -f deploy/kuberay/                        (KubeRay; see README "Kubernetes")
#
# Everything is installed at build time from pyproject.toml; nothing is downloaded at run time.
# tests/unit/test_dockerfile.py lints this file with hadolint and checks its COPY sources exist.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# pyproject.toml names README.md as the long description; the packages are its allowlist.
COPY pyproject.toml README.md ./
COPY cluster ./cluster
COPY actors ./actors
COPY pipelines ./pipelines
COPY serve ./serve
COPY event_streaming_bus ./event_streaming_bus
# A regular (not editable) install into /install, copied to /usr/local below: KubeRay starts
# Ray in a login shell (`bash -lc`), and Debian's /etc/profile resets PATH to /usr/local/bin and
# the system's, so `ray`, `serve` and `esb` must live there (a venv's bin/ would be lost).
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim-bookworm
# wget: KubeRay's exec probes (`wget ... /api/local_raylet_healthz | grep success`) call it.
# Debian package versions are not pinned: bookworm's security updates replace them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/*
# Non-root, uid 1000 like the rayproject/ray images (KubeRay's samples assume it).
RUN useradd --create-home --uid 1000 --gid 100 --shell /bin/bash ray
COPY --from=build /install /usr/local
COPY deploy/serve-config.yaml /etc/esb/serve-config.yaml
# Env names are cluster/settings.py's. The image binds the API to every interface (a container's
# loopback is its own); secrets (JWT_SECRET_KEY, ESB_MASTER_KEY_FILE, RAY_AUTH_TOKEN) and the
# external services (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, RAY_DASHBOARD_URL) come from the
# deployment.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8080 \
    LOG_FORMAT=json \
    ESB_STATE_DIR=/home/ray/.esb \
    RAY_USAGE_STATS_ENABLED=0 \
    RAY_AUTH_MODE=token
USER 1000:100
WORKDIR /home/ray
# 8080 API (Serve), 6379 Ray GCS, 8265 Ray dashboard and Jobs API, 10001 Ray Client.
EXPOSE 8080 6379 8265 10001
# The API's own health route, on the node that serves it (docker compose's ray-head). Kubernetes
# ignores image health checks: KubeRay sets the pods' probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('API_PORT', '8080') + '/health', timeout=4)"]
CMD ["ray", "start", "--head", "--block", "--port=6379", "--dashboard-host=0.0.0.0", "--disable-usage-stats"]
