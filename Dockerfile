# cdmetrics: one image for every role (sync, serve, dashboard, report); the command picks the role.
#   docker build -t cdmetrics .
#   docker run --rm cdmetrics --help
# Nothing secret is baked in: tokens and the warehouse URL come from the environment at run time.

# --- build: the project and its dependencies into a virtual environment -------------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/cdmetrics

# The whole build context less .dockerignore (tests, docs, deploy/, local files): pyproject.toml's
# package list decides what is installed, so a new package needs no change here.
WORKDIR /src
COPY . .
RUN /opt/cdmetrics/bin/pip install --no-cache-dir . \
    && /opt/cdmetrics/bin/python -m compileall -q /opt/cdmetrics

# --- runtime: Debian slim, the weekly report's libraries, a non-root user ------------------------
FROM python:3.11-slim-bookworm

# WeasyPrint (PDF reports) needs pango and harfbuzz-subset, and a font (the Makefile's REPORT_DEBS
# less poppler-utils, which only the tests use). Versions follow the base image's Debian release,
# so its security updates are taken on every build (hence DL3008; deploy/README.md).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 cdmetrics \
    && useradd --system --uid 10001 --gid cdmetrics --home-dir /var/lib/cdmetrics \
        --create-home --shell /usr/sbin/nologin cdmetrics

COPY --from=build /opt/cdmetrics /opt/cdmetrics

ENV PATH=/opt/cdmetrics/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/cdmetrics

# The working folder holds ./cdmetrics.toml and the default SQLite warehouse when nothing else is
# configured; in a cluster, CDMETRICS_CONFIG points at a mounted ConfigMap instead.
WORKDIR /var/lib/cdmetrics
USER 10001:10001

# 8080: cdmetrics serve; 8501: cdmetrics dashboard.
EXPOSE 8080 8501

# The HTTP service's health endpoint (200 when the warehouse answers). Other roles (sync, dashboard)
# override or disable it: see deploy/compose.yaml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["cdmetrics"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
