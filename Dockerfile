# authserver as a container: docker build -t authserver .
#
# Two stages: `build` makes a virtualenv with the dependencies and the wheel; the runtime stage
# copies only that virtualenv onto a clean slim image and runs it as an unprivileged user.
# tests/test_dockerfile.py lints this file with hadolint and runs the build stage's steps in a
# fresh virtualenv (no Docker engine runs on our machines).
#
# The schema is not made by `serve` on Postgres: run `authserver migrate` once per release
# first, as its own step (deploy/compose.yaml: the `migrate` service; Kubernetes: a Job or an
# init container running the same image with the argument `migrate`). It is safe to run from
# every replica at once (a Postgres advisory lock).

# The base image pinned to one Python release (and Debian release); bump both stages together.
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The dependencies alone first, read from the server's and the verifier kit's pyproject.toml:
# this layer is rebuilt only when they change, not on every change to the code. The server's
# dependency on the kit itself (a path, `authserver-verify @ ...`) is left to the next step.
# Their versions are constraints.txt's (scripts/constraints), so every build installs the same.
COPY verifier/pyproject.toml ./verifier/
COPY constraints.txt ./
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*dict.fromkeys(d for f in ('pyproject.toml', 'verifier/pyproject.toml') for d in tomllib.load(open(f, 'rb'))['project']['dependencies'] if not d.startswith('authserver-verify')), sep='\n')" > requirements.txt \
    && pip install --no-cache-dir -c constraints.txt -r requirements.txt
# Then the project itself and the kit, as the same wheels `pip install` would make, migrations
# inside; `pip check` fails the build if either needs something the step above did not install.
COPY README.md ./
COPY verifier ./verifier
COPY authserver ./authserver
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --no-deps --wheel-dir dist . ./verifier \
    && pip install --no-cache-dir --no-deps dist/*.whl \
    && pip check

FROM python:3.11.13-slim-bookworm
# AUTHSERVER_HOST/PORT: where `serve` listens; the HEALTHCHECK below asks the same port, so
# change the port here (docker run -e AUTHSERVER_PORT=9000), not with `serve --port`.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AUTHSERVER_HOST=0.0.0.0 \
    AUTHSERVER_PORT=8000
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/authserver --create-home \
        --shell /usr/sbin/nologin authserver
COPY --from=build /opt/venv /opt/venv
# The embedded SQLite default (./authserver.db) and the keys/ folder live here; in production
# set AUTHSERVER_DATABASE_URL to Postgres and AUTHSERVER_KEY_ENCRYPTION_KEY from a secret.
WORKDIR /var/lib/authserver
USER 10001:10001
EXPOSE 8000
# slim has no curl: Python's own urllib asks /healthz (urlopen raises, so exits 1, on non-2xx)
# on the port `serve` listens on, AUTHSERVER_PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % (os.environ.get('AUTHSERVER_PORT') or '8000'), timeout=2)"]
ENTRYPOINT ["authserver"]
CMD ["serve"]
