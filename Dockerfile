# syntax=docker/dockerfile:1
# The image of the workers and of Flower (target "cpu", the default) and of the GPU workers
# (target "gpu"). docker-compose.yml builds both; see "Deploy" in README.md.
#
# qiskit-aer and qiskit-aer-gpu both install the qiskit_aer module, so they cannot share an
# environment: each target installs the dependencies that pyproject.toml lists, with
# qiskit-aer swapped for AER_PACKAGE (same version range). No secret is baked in: every
# setting comes from the environment at run time.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
    && groupadd --system --gid 10001 jobset \
    && useradd --system --uid 10001 --gid jobset --home-dir /app --shell /usr/sbin/nologin jobset \
    && mkdir -p /app /data \
    && chown jobset:jobset /data
WORKDIR /app
COPY pyproject.toml README.md ./
# Prints pyproject.toml's dependencies (plus the extras named in EXTRAS), qiskit-aer replaced
# by AER_PACKAGE; run by the dependency stages below.
COPY <<'EOF' /usr/local/bin/jobset-requirements
#!/usr/bin/env python3
import os
import re
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
requirements = list(project["dependencies"])
for extra in os.environ.get("EXTRAS", "").split():
    requirements += project["optional-dependencies"][extra]
aer = os.environ.get("AER_PACKAGE", "qiskit-aer")
for requirement in requirements:
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    if re.sub(r"[-_.]+", "-", name).lower() == "qiskit-aer":
        requirement = aer + requirement[len(name):]
    print(requirement)
EOF
RUN chmod 0755 /usr/local/bin/jobset-requirements

# A layer per dependency set that changes only with pyproject.toml.
FROM base AS deps-gpu
ARG AER_PACKAGE=qiskit-aer-gpu
ARG EXTRAS=""
RUN jobset-requirements > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

FROM base AS deps-cpu
ARG AER_PACKAGE=qiskit-aer
# Flower runs from this image too.
ARG EXTRAS="flower"
RUN jobset-requirements > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

FROM deps-gpu AS gpu
COPY jobset ./jobset
COPY workers ./workers
RUN pip install --no-deps .
USER jobset
CMD ["celery", "-A", "workers.app", "worker", "-Q", "jobset.gpu", "--concurrency=1", "--loglevel=INFO"]

# Last, so that a plain "docker build ." builds the CPU image.
FROM deps-cpu AS cpu
COPY jobset ./jobset
COPY workers ./workers
RUN pip install --no-deps . && python -c "import jobset, workers.metrics"
USER jobset
CMD ["celery", "-A", "workers.app", "worker", "--loglevel=INFO"]
