# One image for every role: the API (default), the worker (`python worker.py` or `worker`) and the
# migrations (`migrate`, i.e. `python -m infra.migrate`); deploy/docker-entrypoint.sh picks. See docs/DEPLOY.md.
ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: a venv with the package and its runtime dependencies only (no [dev], no [embedded])
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
# tzdata: gateways/vnpay_wire.py needs ZoneInfo("Asia/Ho_Chi_Minh") and slim images may lack
# /usr/share/zoneinfo.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt tzdata
COPY worker.py ./
COPY workflows/ workflows/
COPY activities/ activities/
COPY api/ api/
COPY services/ services/
COPY domain/ domain/
COPY infra/ infra/
COPY store/ store/
COPY gateways/ gateways/
# The runtime needs neither pip nor setuptools (pip builds in an isolated env): drop ~20 MB.
RUN pip install . && python -m pip uninstall -y pip setuptools

# ---- runtime: the venv and the source, owned by root, run by an unprivileged user
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 paywindow \
    && useradd --system --uid 10001 --gid paywindow --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin paywindow
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# The source next to the installed copy: alembic.ini + migrations/ are not part of the package, and
# infra/migrate.py finds them beside infra/. No devstack/: the dev tooling is not the product.
COPY alembic.ini worker.py ./
COPY migrations/ migrations/
COPY workflows/ workflows/
COPY activities/ activities/
COPY api/ api/
COPY services/ services/
COPY domain/ domain/
COPY infra/ infra/
COPY store/ store/
COPY gateways/ gateways/
COPY deploy/docker-entrypoint.sh deploy/preflight.py deploy/register_search_attributes.py deploy/
# Numeric, so Kubernetes runAsNonRoot can verify it (10001 = paywindow, created above).
USER 10001:10001
EXPOSE 8000
# Liveness only (the worker has no HTTP port: compose disables this for it). /readyz is for
# load balancers: it also needs Postgres, Temporal and a polling worker.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('API_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["/bin/sh", "/app/deploy/docker-entrypoint.sh"]
CMD ["api"]
