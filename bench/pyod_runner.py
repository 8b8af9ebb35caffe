"""Fit PyOD detectors and score test rows; runs inside the PyOD venv, never in synthgate's environment.

PyOD is a peer in `bench/anomaly.py`, not a synthgate dependency, so it lives in its own venv:

    python3.11 -m venv /work/pyod-venv
    /work/pyod-venv/bin/pip install torch==2.13.0   # first: the CPU wheel, or pip pulls a multi-GB CUDA build
    /work/pyod-venv/bin/pip install "pyod>=3.6,<3.7" tqdm   # tqdm: PyOD 3.6's VAE imports it, pyod does not declare it

    /work/pyod-venv/bin/python bench/pyod_runner.py --data features.npz --out scores.npz --seed 0

`features.npz` holds `train` and `test`, float arrays of the same encoded features the bench gives IsolationForest.
Writes `scores.npz` with one array of test scores per detector (PyOD's `decision_function`: higher is more
abnormal) and prints one JSON line: {"IForest": {"fit_score_s": ...} or {"error": ...}, ...}. Each detector runs
at PyOD's defaults, seeded where it takes a seed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

DETECTORS = ("IForest", "GMM", "VAE", "ECOD")


def build(name: str, seed: int):
    """One PyOD detector at its defaults (the VAE quiet, every seedable one seeded)."""
    if name == "IForest":
        from pyod.models.iforest import IForest

        return IForest(random_state=seed)
    if name == "GMM":
        from pyod.models.gmm import GMM

        return GMM(random_state=seed)
    if name == "VAE":
        import torch
        from pyod.models.vae import VAE

        torch.manual_seed(seed)
        return VAE(random_state=seed, verbose=0, device="cpu")
    from pyod.models.ecod import ECOD

    return ECOD()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)  # the same one thread our models score on
    data = np.load(args.data)
    train, test = data["train"].astype(np.float64), data["test"].astype(np.float64)
    scores, report = {}, {}
    for name in args.detectors:
        start = time.perf_counter()
        try:
            detector = build(name, args.seed).fit(train)
            scores[name] = np.asarray(detector.decision_function(test), dtype=np.float64)
            report[name] = {"fit_score_s": time.perf_counter() - start}
        except Exception as exc:  # a detector that fails is a row in the bench, not a lost run
            report[name] = {"error": repr(exc)[:200]}
    handle, tmp = tempfile.mkstemp(suffix=".npz", dir=os.path.dirname(os.path.abspath(args.out)))
    os.close(handle)
    np.savez(tmp, **scores)
    os.replace(tmp, args.out)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
