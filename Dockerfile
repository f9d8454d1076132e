# aslproc BIDS App image: GPU when the host offers one (`--gpus all`), CPU otherwise.
#
# Build from the repository root (the tag and VERSION must be the `version` file):
#   docker build --build-arg VERSION=$(cat version) -t aslproc:$(cat version) .
# Run:
#   docker run --rm --gpus all -u "$(id -u):$(id -g)" \
#       -v /data/bids:/bids:ro -v /data/out:/out -v /scratch/work:/work \
#       aslproc:$(cat version) /bids /out participant -w /work --participant-label 01
# Other build arguments: TORCH_INDEX_URL (CUDA flavour of the torch wheel, e.g. .../cpu for a
# CPU-only image), CONTAINER_TAG (written to dataset_description.json GeneratedBy.Container).
# Singularity/Apptainer images are built from this image: see Singularity.def.
#
# The install steps mirror `make install`: the pinned torch first (Makefile TORCH_PIN), then
# the package; tests/test_containers.py keeps the two in step.

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------------------------------------
# base: CUDA user space hooks + Python from deadsnakes (Ubuntu 22.04 ships 3.10 only).
# The -base flavour is enough: the CUDA build of torch brings its own CUDA runtime, cuBLAS and
# cuDNN as pip wheels, so the -runtime/-cudnn flavours would only duplicate several GB.
FROM nvidia/cuda:12.8.1-base-ubuntu22.04 AS base
ARG PYTHON_VERSION
ARG DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Unpinned apt packages: the pinned CUDA/Ubuntu tag fixes the distribution, and the
# deadsnakes PPA keeps only its latest build of each package, so a pinned version would make
# the image unbuildable at the next PPA upload.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gpg-agent \
        software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get install -y --no-install-recommends "python${PYTHON_VERSION}" \
    && apt-get purge -y --auto-remove software-properties-common gpg-agent \
    && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------------------------------------
# builder: a virtual environment in /opt/venv with torch and aslproc; only it moves on.
FROM base AS builder
ARG PYTHON_VERSION
ARG VERSION=0.1.0
# Same version as the Makefile's TORCH_PIN; the CUDA wheel index falls back to the CPU at run
# time when no GPU is visible.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# Unpinned apt package: see the base stage (deadsnakes keeps only its latest build).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends "python${PYTHON_VERSION}-venv" \
    && rm -rf /var/lib/apt/lists/*
RUN "python${PYTHON_VERSION}" -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir --disable-pip-version-check \
        --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md version ./
COPY aslproc ./aslproc
RUN pip install --no-cache-dir --disable-pip-version-check . \
    && test "$(aslproc --version)" = "aslproc ${VERSION}" \
    && python -c "import aslproc, torch; print(aslproc.__version__, torch.__version__)" \
    && bids-validator-deno --version

# ---------------------------------------------------------------------------------------------
# final image
FROM base
ARG VERSION=0.1.0
ARG CONTAINER_TAG=aslproc:${VERSION}
ARG SOURCE_URL=https://github.com/aslproc/aslproc
LABEL org.opencontainers.image.title="aslproc" \
      org.opencontainers.image.description="BIDS App for arterial spin labeling: preprocessing, CBF quantification, learned denoising and super-resolution" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /opt/venv /opt/venv
RUN useradd --create-home --uid 1000 --shell /bin/bash aslproc

# Caches live under /tmp: the image runs as any uid (`docker run -u`, Singularity) with a
# read-only root file system and possibly no home directory. Nothing is downloaded at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NIPYPE_NO_ET=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.cache/matplotlib \
    TORCH_HOME=/tmp/.cache/torch \
    DENO_DIR=/tmp/.cache/deno \
    DENO_NO_UPDATE_CHECK=1 \
    ASLPROC_CONTAINER_TAG=${CONTAINER_TAG}

# Numeric so that Kubernetes runAsNonRoot and the host can check it: the aslproc user.
USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["aslproc"]
