# One image for every Runyard process; compose.yaml (or your orchestrator) picks the command.
# Build: docker build -t runyard .   Not built by the test suite (no Docker daemon or image
# registry on its machines); the Procfile it runs is tested (tests/e2e/test_procfile.py).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PORT=8000
WORKDIR /app

# psycopg[binary] and the other wheels need nothing compiled.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN useradd --system --home /app runyard && mkdir -p /app/var && chown runyard /app/var
USER runyard

EXPOSE 8000
# The web process; the worker and the engine override the command (see compose.yaml).
CMD ["sh", "-c", "exec daphne -b 0.0.0.0 -p ${PORT} dashboard.asgi:application"]
