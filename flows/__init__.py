"""Prefect flows that compose the tasks, the Python API and the `synthgate` command line."""

import os

# Quiet, offline-friendly Prefect defaults for every entry (CLI, Python API, deployments); a user's own environment
# wins. Set here, before any flow module imports Prefect.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "synthgate")
# Our loggers also run outside flow runs (the Python API without orchestration, `schema infer`): no API to send to.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
