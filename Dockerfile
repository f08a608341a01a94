# The one application image: every service (gunicorn), the workers, the relay and the `lvbao` command.
# No secrets here: everything is read from the environment at run time (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 lvbao \
    && useradd --system --uid 10001 --gid lvbao --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin lvbao

# Only what the package is built from: no .venv, var/ (embedded data and local secrets) or .git.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY lvbao ./lvbao
COPY miniapp-mock ./miniapp-mock
# Installed into site-packages; the sources are removed so only the installed copy can be imported.
RUN pip install . && rm -rf /src

WORKDIR /app
USER lvbao
EXPOSE 8000
CMD ["lvbao", "--help"]
