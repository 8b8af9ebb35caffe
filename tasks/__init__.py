"""Pipeline steps: plain functions that hold the logic, each with a thin Prefect `@task` wrapper at the bottom."""
