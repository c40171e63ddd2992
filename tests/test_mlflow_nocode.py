"""MLflow models deployed without a scoring script: real models, real files, real jobs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow_models import (
    breast_cancer,
    predictions_of,
    save_frame_model,
    save_image_model,
    save_sklearn_model,
)
from prefect.testing.utilities import prefect_test_harness
from support import load_mnist, write_pngs, write_script

from blocks.errors import InputFileError, SpecError
from blocks.spec_loading import parse_deployment
from flows.batch_score import batch_score
from flows.resolve import resolve_spec
from scoring.builtin import builtin_code
from scoring.mlmodel import ColumnSpec, TensorSpec, read_mlmodel
from scoring.readers import read_image, read_table

pytest.importorskip("mlflow")
pytest.importorskip("pyarrow")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mlflow-models")
    return {
        "signed": save_sklearn_model(root / "signed" / "model"),
        "unsigned": save_sklearn_model(root / "unsigned" / "model", signature=False),
        "image": save_image_model(root / "image" / "model"),
        "frame": save_frame_model(root / "frame" / "model"),
    }


def nocode_spec(model: Path, **settings) -> object:
    """A deployment with no code_configuration and no environment, its model inline."""
    settings.setdefault("max_concurrency_per_instance", 1)
    return parse_deployment(
        {
            "name": "mlflow-dpl",
            "type": "model",
            "compute": "azureml:local",
            "model": {"name": "mlflow-model", "path": str(model), "type": "mlflow_model"},
            "settings": settings,
        }
    )


def run_job(spec, input_dir: Path, output: Path, **overrides):
    return batch_score(
        input=str(input_dir),
        deployment=spec,
        output_path=str(output),
        return_state=True,
        **overrides,
    )


def expected_rows(model: Path, frame: pd.DataFrame, name: str) -> str:
    """The platform's MLflow output for one file: ``row,prediction,file`` per input row."""
    predicted = predictions_of(model, frame)
    return "".join(f"{i},{value},{name}\n" for i, value in enumerate(predicted))


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """CSV and Parquet that score, a CSV missing a column, a .txt, a CSV with a bad value."""
    features, _ = breast_cancer()
    folder = tmp_path_factory.mktemp("mixed")
    features[400:450].to_csv(folder / "a_part.csv", index=False)
    features[450:480].to_parquet(folder / "b_part.parquet", index=False)
    features[480:490].drop(columns=["mean radius"]).to_csv(folder / "c_missing.csv", index=False)
    (folder / "d_notes.txt").write_text("not a table\n")
    bad = features[490:495].astype({"worst area": object})
    bad.iloc[2, bad.columns.get_loc("worst area")] = "abc"
    bad.to_csv(folder / "e_bad_value.csv", index=False)
    return folder


def test_csv_and_parquet_score_and_each_bad_file_fails_alone(models, mixed_folder, tmp_path):
    features, _ = breast_cancer()
    state = run_job(
        nocode_spec(models["signed"], mini_batch_size=2), mixed_folder, tmp_path / "out"
    )
    result = state.result()
    assert (result.items, result.items_succeeded, result.items_failed) == (5, 2, 3)
    assert result.mini_batches_succeeded == 3  # the failed files did not fail their batches

    # byte for byte: row, prediction, file name; no header; CSV rows then Parquet rows
    expected = expected_rows(models["signed"], features[400:450], "a_part.csv") + expected_rows(
        models["signed"], features[450:480].reset_index(drop=True), "b_part.parquet"
    )
    assert (tmp_path / "out" / "predictions.csv").read_text() == expected
    assert expected.startswith("0,")  # sanity of the reference itself

    errors = (tmp_path / "out" / "logs" / "errors.txt").read_text()
    assert "c_missing.csv: missing column 'mean radius', which the model's signature" in errors
    assert (
        "d_notes.txt: file type '.txt' is not supported; the built-in MLflow scorer "
        "reads .csv, .parquet, .pqt, .png"
    ) in errors
    assert "e_bad_value.csv: column 'worst area', row 2: 'abc' cannot be read as double" in errors
    with open(tmp_path / "out" / "logs" / "processed_mini-batches.csv") as handle:
        report = list(csv.DictReader(handle))
    assert [(r["status"], r["succeeded"], r["failed"], r["error_category"]) for r in report] == [
        ("succeeded", "2", "0", ""),
        ("succeeded", "0", "2", "item_error"),
        ("succeeded", "0", "1", "item_error"),
    ]


def test_failed_files_count_against_the_error_threshold(models, mixed_folder, tmp_path):
    state = run_job(
        nocode_spec(models["signed"], mini_batch_size=5),
        mixed_folder,
        tmp_path / "out",
        error_threshold=2,
    )
    assert state.is_failed()
    assert "The number of failed items is 3, which exceeds error threshold 2." in state.message
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_a_model_without_a_signature_scores_csv_as_read(models, tmp_path):
    features, _ = breast_cancer()
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for number in range(3):
        features[500 + 10 * number : 510 + 10 * number].to_csv(
            inputs / f"p{number}.csv", index=False
        )
    assert read_mlmodel(models["unsigned"]).signature is None
    result = run_job(nocode_spec(models["unsigned"]), inputs, tmp_path / "out").result()
    assert (result.items_succeeded, result.items_failed) == (3, 0)
    expected = "".join(
        expected_rows(models["unsigned"], pd.read_csv(inputs / f"p{n}.csv"), f"p{n}.csv")
        for n in range(3)
    )
    assert (tmp_path / "out" / "predictions.csv").read_text() == expected


def test_an_image_model_gets_arrays_shaped_to_its_tensor_signature(models, tmp_path):
    from PIL import Image

    images, _ = load_mnist(4)
    inputs = tmp_path / "digits"
    write_pngs(inputs, images)
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(inputs / "zz_big.png")
    result = run_job(
        nocode_spec(models["image"], mini_batch_size=2), inputs, tmp_path / "out"
    ).result()
    assert (result.items_succeeded, result.items_failed) == (4, 1)
    expected = "".join(f"0,{int(image.sum())},{n:05d}.png\n" for n, image in enumerate(images))
    assert (tmp_path / "out" / "predictions.csv").read_text() == expected  # one row per file
    errors = (tmp_path / "out" / "logs" / "errors.txt").read_text()
    assert (
        "zz_big.png: image of shape (32, 32) (1024 values) does not fit the signature's "
        "tensor shape [-1, 28, 28]"
    ) in errors


def test_the_output_is_row_predictions_file_with_pandas_quoting(models, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "heart, part 1.csv").write_text("l,p\n1,0.9731\n0,0.0412\n")
    (inputs / "heart-2.csv").write_text("l,p\n1,1e-07\n")
    result = run_job(nocode_spec(models["frame"]), inputs, tmp_path / "out").result()
    assert result.items_succeeded == 2
    assert (tmp_path / "out" / "predictions.csv").read_bytes() == (  # as docs/semantics.md §7
        b'0,1,0.9731,"heart, part 1.csv"\n1,0,0.0412,"heart, part 1.csv"\n0,1,1e-07,heart-2.csv\n'
    )


READER_SCRIPT = """
from scoring.readers import read_table
from scoring.results import MiniBatchOutput


def init():
    pass


def run(mini_batch):
    rows, failed = [], {}
    for path in mini_batch:
        try:
            rows.append(f"{path.rsplit('/', 1)[1]} {len(read_table(path))}")
        except Exception as exc:
            failed[path] = str(exc)
    return MiniBatchOutput(rows, failed)
"""


def test_a_custom_script_reuses_the_readers_and_names_its_failed_files(models, tmp_path):
    features, _ = breast_cancer()
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    features[:7].to_csv(inputs / "a.csv", index=False)
    features[:3].to_parquet(inputs / "b.pqt", index=False)
    (inputs / "c.csv").write_bytes(b"")  # pandas: no columns to parse
    code = write_script(tmp_path / "code", READER_SCRIPT)
    spec = parse_deployment(
        {
            "name": "readers-dpl",
            "type": "model",
            "compute": "azureml:local",
            "model": {"name": "m", "path": str(models["signed"]), "type": "mlflow_model"},
            "code_configuration": {"code": str(code), "scoring_script": "score.py"},
            "settings": {"mini_batch_size": 3, "max_concurrency_per_instance": 1},
        }
    )
    result = run_job(spec, inputs, tmp_path / "out").result()
    assert (result.items_succeeded, result.items_failed) == (2, 1)
    assert (tmp_path / "out" / "predictions.csv").read_text() == "a.csv 7\nb.pqt 3\n"
    assert (
        "c.csv: No columns to parse from file"
        in (tmp_path / "out" / "logs" / "errors.txt").read_text()
    )


# --- refused before any job -------------------------------------------------------------------


def test_a_model_without_pyfunc_or_not_mlflow_is_refused(models, tmp_path):
    only_sklearn = tmp_path / "only-sklearn"
    only_sklearn.mkdir()
    (only_sklearn / "MLmodel").write_text("flavors:\n  sklearn:\n    pickled_model: m.pkl\n")
    with pytest.raises(SpecError, match="flavor.*sklearn but not python_function"):
        builtin_code(only_sklearn, model_type="mlflow_model", label="'x'")
    with pytest.raises(SpecError, match="is a custom_model; a deployment without"):
        builtin_code(models["signed"], model_type="custom_model", label="'x'")
    spec = nocode_spec(models["signed"]).model_copy(
        update={
            "model": nocode_spec(models["signed"]).model.model_copy(update={"type": "custom_model"})
        }
    )
    with pytest.raises(SpecError, match="needs an mlflow_model"):
        resolve_spec(spec)  # what the flow does first, before any input is listed


# --- the readers on their own -----------------------------------------------------------------


def test_read_table_casts_to_the_signature_and_names_the_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c,extra\n1,2.5,true,x\n2,3,false,y\n")
    columns = [ColumnSpec("a", "long"), ColumnSpec("b", "float"), ColumnSpec("c", "boolean")]
    frame = read_table(str(path), columns)
    assert [str(t) for t in frame.dtypes] == ["int64", "float32", "bool", "str"]
    with pytest.raises(InputFileError, match=r"column 'b', row 0: 2.5 is not a whole number"):
        read_table(str(path), [ColumnSpec("b", "integer")])
    with pytest.raises(InputFileError, match="missing column 'z'"):
        read_table(str(path), [*columns, ColumnSpec("z", "double")])
    assert "z" not in read_table(str(path), [ColumnSpec("z", "double", required=False)])


def test_read_image_fits_the_tensor_or_says_why_not(tmp_path):
    from PIL import Image

    Image.fromarray(np.arange(784, dtype=np.uint16).reshape(28, 28).astype(np.uint8)).save(
        tmp_path / "d.png"
    )
    plain = read_image(str(tmp_path / "d.png"))
    assert (plain.shape, plain.dtype) == ((1, 28, 28), np.uint8)
    flat = read_image(str(tmp_path / "d.png"), TensorSpec("float32", (-1, 784)))
    assert (flat.shape, flat.dtype) == ((1, 784), np.float32)
    anysize = read_image(str(tmp_path / "d.png"), TensorSpec("float64", (-1, -1, -1)))
    assert anysize.shape == (1, 28, 28)
    with pytest.raises(InputFileError, match=r"does not fit the signature's tensor shape"):
        read_image(str(tmp_path / "d.png"), TensorSpec("float32", (-1, 32, 32, 3)))
