# syntax=docker/dockerfile:1
#
# Triton model-repository image: exports EfficientNet-Lite0 to ONNX in a
# throw-away torch stage and ships only model_repo/ in a tiny final image.
#
# Build from the repository root:
#   docker build -f deploy/model.Dockerfile -t imagesearch-model:0.1.0 .
#
# The final image holds the repository at /models:
#   /models/image_embedding/config.pbtxt            default config (python backend, local CPU use)
#   /models/image_embedding/configs/tensorrt.pbtxt  onnxruntime backend + TensorRT (GPU, production)
#   /models/image_embedding/2/model.onnx            exported here (the base version)
#   /models/image_embedding/3/                      version 2 + the generic learned whitening, fitted
#                                                   here by `imagesearch adapt` (served by default)
# Kubernetes copies it into an emptyDir with an initContainer (deploy/k8s/triton.yaml);
# docker-compose does the same into a named volume (service "model-init").
# Its default command copies /models/. into $MODEL_REPO_DEST (default /model-repo).

ARG PYTHON_IMAGE=python:3.11-slim
ARG FINAL_IMAGE=busybox:1.36

# ---- export: torch (CPU wheel) + the "build" extra of the project, then tools/export_model.py
FROM ${PYTHON_IMAGE} AS export
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The CPU-only torch wheel first (the PyPI one pulls in gigabytes of CUDA libraries
# that the export does not need); `.[build]` then finds torch already satisfied.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README* LICENSE* ./
COPY protos ./protos
COPY src ./src
COPY services ./services
COPY tools ./tools
# Real product photos for the export's ONNX-vs-PyTorch parity check (demo/catalog/*.jpg).
COPY demo/catalog ./demo/catalog
# Configs only: .dockerignore keeps any locally exported *.onnx out of the context.
COPY model_repo ./model_repo
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install ".[build,adapt]"
# The generic products (tools/build_generic_set.py) are Debian's emoji pictures.
RUN apt-get update && apt-get install -y --no-install-recommends fonts-noto-color-emoji \
 && rm -rf /var/lib/apt/lists/*
RUN python tools/export_model.py \
 && test -s model_repo/image_embedding/2/model.onnx \
 && python tools/build_generic_set.py --out /tmp/generic --fit-into model_repo \
 && test -s model_repo/image_embedding/3/model.onnx \
 && find model_repo -name '__pycache__' -prune -exec rm -rf {} + \
 && ls -lR model_repo

# ---- final: just the model repository
FROM ${FINAL_IMAGE}
LABEL org.opencontainers.image.title="imagesearch-model" \
      org.opencontainers.image.description="Triton model repository for imagesearch (image_embedding, EfficientNet-Lite0 ONNX)"
COPY --from=export --chown=1000:1000 /src/model_repo /models
# The copy destination exists and belongs to uid 1000, so that an empty Docker named
# volume mounted there inherits that owner (Kubernetes uses an emptyDir + fsGroup instead).
RUN mkdir -p /model-repo && chown 1000:1000 /model-repo
# Triton's image runs as triton-server (uid 1000) in Kubernetes; same uid here.
USER 1000:1000
ENV MODEL_REPO_DEST=/model-repo
CMD ["sh", "-c", "cp -R /models/. \"${MODEL_REPO_DEST}/\" && ls -R \"${MODEL_REPO_DEST}\""]
