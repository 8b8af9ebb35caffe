"""The Python API: `synthgate.synthesize(df)` runs the gated flow; `synthgate.Synthesizer` fits and samples."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

import synthgate
from synthgate.schemas.errors import GateRefusedError, InvalidInputError, NotFittedError


def _assert_penguin_shaped(data: pd.DataFrame, penguins: pd.DataFrame) -> None:
    assert list(data.columns) == list(penguins.columns)
    assert data.dtypes.to_dict() == penguins.dtypes.to_dict()
    assert set(data["species"].dropna()) <= set(penguins["species"].dropna())
    real, fake = penguins["body_mass_g"], data["body_mass_g"]
    assert abs(fake.mean() - real.mean()) < 0.25 * real.std()  # the model learned the scale, not just the dtype


def test_import_synthgate_loads_neither_torch_nor_prefect():
    # Act
    code = "import sys, synthgate; print(sorted(m for m in ('torch', 'prefect', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    # Assert
    assert out.strip() == "[]"
    assert {"synthesize", "Synthesizer", "GateRefusedError"} <= set(dir(synthgate))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        synthgate.nope  # noqa: B018


@pytest.mark.slow
def test_synthesize_without_orchestration_returns_gated_penguin_rows(penguins, tmp_path):
    # Act
    result = synthgate.synthesize(penguins, model="gmm", seed=0, output=tmp_path / "p.parquet", orchestrate=False)

    # Assert
    _assert_penguin_shaped(result.data, penguins)
    assert len(result.data) == result.metadata.n_rows_train == round(len(penguins) * 0.8)
    assert result.gates.passed and result.metadata.model == "gmm" and result.metadata.seed == 0
    assert result.report_path.exists() and result.output_path == tmp_path / "p.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(result.output_path), result.data)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


@pytest.mark.slow
def test_synthesize_refusal_raises_with_the_result_attached(penguins, tmp_path):
    # Act
    with pytest.raises(GateRefusedError) as caught:
        synthgate.synthesize(
            penguins,
            model="gmm",
            thresholds={"column_shapes_min": 1.0},
            output=tmp_path / "p.parquet",
            use_cache=False,
            orchestrate=False,
        )

    # Assert
    result = caught.value.result
    assert result.data is None and not result.published
    assert "column_shapes" in result.gates.failing
    assert result.report_path.exists() and not (tmp_path / "p.parquet").exists()
    assert result.metadata.model == "gmm"


def test_synthesize_refuses_a_bad_request_before_any_work():
    with pytest.raises(InvalidInputError, match="needs a pandas DataFrame"):
        synthgate.synthesize([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="rows"):
        synthgate.synthesize(pd.DataFrame({"a": [1]}), rows=-5, orchestrate=False)


@pytest.mark.slow
def test_synthesize_with_no_prefect_api_reachable_still_runs(tmp_path):
    # Arrange: an API URL that refuses connections; any Prefect call would fail
    code = (
        "import palmerpenguins, synthgate\n"
        "r = synthgate.synthesize(palmerpenguins.load_penguins(), model='gmm', seed=0, use_cache=False,"
        f" output=r'{tmp_path / 'p.parquet'}', orchestrate=False)\n"
        "print(r.data.shape)\n"
    )
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_HOME": str(tmp_path / "ph")}

    # Act
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)

    # Assert
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(275, 8)"


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_synthesize_orchestrated_is_one_flow_run_with_the_same_rows(penguins, tmp_path):
    # Act
    plain = synthgate.synthesize(penguins, model="gmm", seed=0, output=tmp_path / "a.parquet", orchestrate=False)
    flowed = synthgate.synthesize(penguins, model="gmm", seed=0, output=tmp_path / "b.parquet")

    # Assert: same steps, same seed, same rows; only the orchestrated run has a Prefect flow run id
    pd.testing.assert_frame_equal(plain.data, flowed.data)
    assert flowed.metadata.data_hash == plain.metadata.data_hash


# ------------------------------------------------------------------------------------------------------ Synthesizer
@pytest.fixture(scope="module")
def fitted(penguins):
    return synthgate.Synthesizer(model="gmm", seed=0, model_options={"n_components": 6}).fit(penguins)  # no BIC search


@pytest.mark.slow
def test_synthesizer_samples_penguin_rows_and_each_call_draws_new_ones(fitted, penguins):
    # Act
    first, second = fitted.sample(300), fitted.sample(300)

    # Assert
    _assert_penguin_shaped(first, penguins)
    assert len(first) == 300 and fitted.model_name_ == "gmm" and fitted.epsilon_ is None
    assert not first.equals(second)
    pd.testing.assert_frame_equal(fitted.sample(50, seed=7), fitted.sample(50, seed=7))


@pytest.mark.slow
def test_synthesizer_conditions_hold_on_every_row(fitted):
    # Act
    rows = fitted.sample(100, conditions={"species": "Gentoo"})

    # Assert
    assert (rows["species"] == "Gentoo").all()
    assert rows["body_mass_g"].mean() > 4500  # Gentoo are the heavy penguins (real mean about 5076 g)


@pytest.mark.slow
def test_synthesizer_save_load_reproduces_samples(fitted, tmp_path):
    # Act
    folder = fitted.save(tmp_path / "synth")
    loaded = synthgate.Synthesizer.load(folder)

    # Assert
    pd.testing.assert_frame_equal(loaded.sample(80, seed=3), fitted.sample(80, seed=3))
    assert sorted(p.name for p in folder.iterdir()) == ["encoder.json", "model", "synthesizer.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["synth"]  # no staging folder left


def test_synthesizer_misuse_fails_with_the_fix():
    with pytest.raises(NotFittedError, match="call fit"):
        synthgate.Synthesizer().sample(5)
    with pytest.raises(InvalidInputError, match="unknown model"):
        synthgate.Synthesizer(model="nope").fit(pd.DataFrame({"a": [1.0, 2.0]}))
    with pytest.raises(InvalidInputError, match=r"Synthesizer\.save"):
        synthgate.Synthesizer.load("/nonexistent/folder")
