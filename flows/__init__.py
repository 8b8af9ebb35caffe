"""Prefect flows that compose the tasks, and the `synthgate` command line."""
