"""Scale-out on a local single-node Ray: per-table tasks run in Ray workers; GPUs are asked for only if they exist."""

from __future__ import annotations

import pytest
import yaml

ray = pytest.importorskip("ray", reason="prefect-ray is not installed (pip install 'synthgate[ray]')")


def test_gpu_options_follow_the_cluster(monkeypatch):
    from synthgate.flows.many import ray_gpu_options
    from synthgate.schemas.errors import InvalidInputError

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert ray_gpu_options(None) == {}  # no GPU: ask for none, never hang
    with pytest.raises(InvalidInputError, match="no GPU"):
        ray_gpu_options(1)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": 2.0})
    assert ray_gpu_options(None) == {"num_gpus": 1.0}
    assert ray_gpu_options(0.5) == {"num_gpus": 0.5}
    with pytest.raises(InvalidInputError, match=r"only 2\.0"):
        ray_gpu_options(3)


@pytest.mark.slow
def test_many_on_a_local_ray(prefect_harness, tmp_path, penguins, monkeypatch):
    from synthgate.flows.many import run_many

    # Arrange
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # no ~/.ray/auth_token for a throwaway cluster
    small = penguins.dropna().reset_index(drop=True)
    small.head(120).to_csv(tmp_path / "a.csv", index=False)
    small.tail(120).to_csv(tmp_path / "b.csv", index=False)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "output_dir": "out",
                # Fidelity on 96 rows is borderline by design (see test_many); this test is about the runner.
                "defaults": {"model_options": {"n_components": 2}, "thresholds": {"pair_trends_min": None}},
                "tables": [{"input": "a.csv"}, {"input": "b.csv"}],
            }
        )
    )

    # Act
    rows = run_many(manifest, runner="ray", max_workers=2, use_cache=False)

    # Assert
    assert [(r["table"], r["status"]) for r in rows] == [("a", "published"), ("b", "published")], rows
    assert (tmp_path / "out" / "a.parquet").exists() and (tmp_path / "out" / "b.parquet").exists()
    assert not ray.is_initialized()  # the runner shut down the Ray it started
