# The image of the workers and of Flower (target "cpu", the default) and of the GPU workers
# (target "gpu", built with --build-arg AER_PACKAGE=qiskit-aer-gpu --build-arg EXTRAS=).
# docker-compose.yml builds both; see "Deploy" in README.md.
#
# It builds with BuildKit and with the classic builder alike (no BuildKit-only syntax), in
# one of two ways:
# - online, the defaults: FROM the official Python slim image, packages from the index;
# - offline, with no network at all: BASE_IMAGE names a local image that has python3 and its
#   venv module (e.g. Debian's python3-venv) and WHEELHOUSE a folder of the build context
#   that holds every wheel (pip then installs with --no-index):
#     docker build --network=none --build-arg BASE_IMAGE=... --build-arg WHEELHOUSE=wheelhouse .
#
# qiskit-aer and qiskit-aer-gpu both install the qiskit_aer module, so they cannot share an
# environment: the deps stage installs the dependencies that pyproject.toml lists, with
# qiskit-aer swapped for AER_PACKAGE (same version range). It is one stage with arguments
# rather than one per kind because the classic builder builds every stage before its
# target: a CPU build must not fetch CUDA. The images copy only its /opt/venv, so neither
# the wheelhouse nor pip's work files end up in them, and install the project on top (a
# small layer: a code change leaves the dependencies' layers as they are). No secret is
# baked in: every setting comes from the environment at run time.

ARG PYTHON_VERSION=3.12
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim-bookworm

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 jobset \
    && useradd --system --uid 10001 --gid jobset --home-dir /app --shell /usr/sbin/nologin jobset \
    && mkdir -p /app /data \
    && chown jobset:jobset /data
WORKDIR /app

# The dependencies, in a layer that changes only with pyproject.toml or the wheelhouse.
FROM base AS deps
ARG AER_PACKAGE=qiskit-aer
# Flower runs from the CPU image too.
ARG EXTRAS="flower"
ARG WHEELHOUSE=""
COPY docker/jobset-requirements /usr/local/bin/jobset-requirements
COPY ${WHEELHOUSE:-wheelhouse}/ /wheelhouse/
COPY pyproject.toml ./
# setuptools too, so that the images install the project with no index or wheelhouse.
RUN python3 -m venv /opt/venv \
    && if [ -n "$WHEELHOUSE" ]; then set -- --no-index --find-links /wheelhouse; fi \
    && python3 /usr/local/bin/jobset-requirements > /tmp/requirements.txt \
    && pip install "$@" -r /tmp/requirements.txt "setuptools>=77"

FROM base AS gpu
COPY --from=deps /opt/venv /opt/venv
COPY pyproject.toml README.md ./
COPY jobset ./jobset
COPY workers ./workers
RUN pip install --no-deps --no-build-isolation . && rm -rf build ./*.egg-info \
    && python -c "import jobset, workers.metrics, qiskit_aer"
USER jobset
CMD ["celery", "-A", "workers.app", "worker", "-Q", "jobset.gpu", "--concurrency=1", "--loglevel=INFO"]

# Last, so that a plain "docker build ." builds the CPU image.
FROM base AS cpu
COPY --from=deps /opt/venv /opt/venv
COPY pyproject.toml README.md ./
COPY jobset ./jobset
COPY workers ./workers
RUN pip install --no-deps --no-build-isolation . && rm -rf build ./*.egg-info \
    && python -c "import jobset, workers.metrics, qiskit_aer"
USER jobset
CMD ["celery", "-A", "workers.app", "worker", "--loglevel=INFO"]
