# syntax=docker/dockerfile:1
#
# The image of one imagesearch service; the same file builds all three:
#   docker build -f deploy/service.Dockerfile --build-arg SERVICE=gateway  --build-arg PORT=50051 -t imagesearch-gateway:0.1.0 .
#   docker build -f deploy/service.Dockerfile --build-arg SERVICE=embedder --build-arg PORT=50052 -t imagesearch-embedder:0.1.0 .
#   docker build -f deploy/service.Dockerfile --build-arg SERVICE=retriever --build-arg PORT=50053 -t imagesearch-retriever:0.1.0 .
# (from the repository root: the whole repo is the context, .dockerignore keeps it small).
# Runs `python -m imagesearch_<SERVICE>` (gRPC on PORT, grpc.health.v1 + reflection); the image
# installs only the package's base and the service's own extra (pyproject.toml).

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: install the repository (non-editable, the service's extra only) into a venv
FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN test -n "${SERVICE}" || (echo "set --build-arg SERVICE=gateway|embedder|retriever" && false)
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the package build needs (see .dockerignore); README*/LICENSE* may be absent.
COPY pyproject.toml constraints.txt README* LICENSE* ./
COPY protos ./protos
COPY src ./src
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip \
 && pip install -c constraints.txt ".[${SERVICE}]" \
 && python -c "import imagesearch, imagesearch_${SERVICE}" \
 && ! pip show torch >/dev/null 2>&1

# ---- runtime: slim base, the venv, a non-root user; no compilers, no sources
FROM ${PYTHON_IMAGE}
ARG SERVICE
ARG PORT
LABEL org.opencontainers.image.title="imagesearch-${SERVICE}" \
      org.opencontainers.image.description="imagesearch ${SERVICE} gRPC service" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 imagesearch \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin imagesearch
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OTEL_SERVICE_NAME=imagesearch-${SERVICE} \
    IMAGESEARCH_SERVICE=${SERVICE} \
    IMAGESEARCH_PROBE_PORT=${PORT}
WORKDIR /app
# Numeric UID so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE ${PORT}
STOPSIGNAL SIGTERM
# grpc.health.v1 check of the overall service (""); NOT_SERVING until dependencies are ready.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "imagesearch.common.probe"]
CMD ["sh", "-c", "exec python -m imagesearch_${IMAGESEARCH_SERVICE}"]
