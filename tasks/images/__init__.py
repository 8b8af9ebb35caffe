"""Image tasks: ingest, validate, split, train and sample, augment, fidelity, privacy, report, publish."""
