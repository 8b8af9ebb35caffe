"""Data contracts: table schemas, run requests, gate thresholds and output metadata.

Pure pydantic and pandas: nothing here imports torch or Prefect, so every layer may depend on it.
"""
