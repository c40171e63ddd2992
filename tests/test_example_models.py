"""The MNIST example (examples/mnist): its data helpers, its two trained models and their
scoring scripts, run the way a batch job runs them (``init()`` then ``run(paths)``).

Training uses the real MNIST test set bundled in ``examples/mnist/data`` (first 8,000 images train,
last 2,000 are held out); each model trains once per module, in seconds, on 2 threads.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# see train.py; takes effect only if torch is not loaded yet
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Loading torch's compiler stack (torch._dynamo -> triton, pulled in by every torch optimizer)
# after TensorFlow segfaults the process: triton's LLVM clashes with TensorFlow's. Load it now,
# while the session is collected, before any test in the session gets to import TensorFlow.
with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mnist"
MNIST_DIR = EXAMPLE / "data"
TRAIN_COUNT = 8000
MIN_ACCURACY = 0.97
# images scored through the scripts: held-out ones, never seen in training
SCORED = range(TRAIN_COUNT, TRAIN_COUNT + 20)

# third-party deprecations the example's scripts trigger as written (the reference reads
# images with torchvision.io.read_image; Keras converts tensors with np.array)
pytestmark = [
    pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept:DeprecationWarning"),
]


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _on_sys_path(folder: Path, *module_names: str):
    """``folder`` first on sys.path inside the block; afterwards sys.path is as before and the
    named top-level modules (``data``, ``mnist_classifier``) are back to what they were."""
    saved = {name: sys.modules.pop(name) for name in module_names if name in sys.modules}
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))
        for name in module_names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def _import_file(path: Path, name: str, *, imports: tuple[str, ...] = ()):
    """Import ``path`` as module ``name`` (not left in sys.modules) with its folder on sys.path,
    as the platform does for a scoring script; ``imports`` are its sibling modules to clean up."""
    with _on_sys_path(path.parent, *imports):
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data_mod():
    return _import_file(EXAMPLE / "data.py", "mnist_example_data")


@pytest.fixture(scope="module")
def train_mod():
    return _import_file(EXAMPLE / "train.py", "mnist_example_train", imports=("data",))


@pytest.fixture(scope="module")
def mnist(data_mod):
    images, labels, _ = data_mod.load_mnist(MNIST_DIR)
    return images, labels


def _trained(framework, train_mod, mnist, tmp_path_factory):
    images, labels = mnist
    out = tmp_path_factory.mktemp(f"models-{framework}")
    metrics = train_mod.train_and_save(framework, images, labels, out, train_count=TRAIN_COUNT)
    print(
        f"{framework}: held-out accuracy {metrics['heldout_accuracy']:.4f}, "
        f"trained in {metrics['train_seconds']:.1f} s"
    )
    return out, metrics


@pytest.fixture(scope="module")
def torch_model(train_mod, mnist, tmp_path_factory):
    return _trained("torch", train_mod, mnist, tmp_path_factory)


@pytest.fixture(scope="module")
def keras_model(train_mod, mnist, tmp_path_factory):
    return _trained("keras", train_mod, mnist, tmp_path_factory)


@pytest.fixture
def scored_pngs(data_mod, mnist, tmp_path):
    """20 held-out digits as PNGs in a folder of their own, and their labels by file name."""
    images, labels = mnist
    paths = data_mod.write_pngs(
        images, labels, tmp_path / "inputs", start=SCORED.start, count=len(SCORED)
    )
    return [str(p) for p in paths], data_mod.labels_by_file(paths, labels)


def _score(driver, paths, labels_by_file):
    driver.init()
    result = driver.run(paths)
    assert isinstance(result, pd.DataFrame)
    assert list(result.columns) == ["file", "class", "probability"]
    assert list(result["file"]) == [os.path.basename(p) for p in paths]
    assert pd.api.types.is_integer_dtype(result["class"])
    assert pd.api.types.is_float_dtype(result["probability"])
    expected = [labels_by_file[name] for name in result["file"]]
    correct = int((result["class"].to_numpy() == np.array(expected)).sum())
    assert correct >= len(paths) - 2, f"only {correct}/{len(paths)} digits right:\n{result}"
    return result


# --------------------------------------------------------------------------- data.py


def test_load_mnist_folder(mnist):
    images, labels = mnist
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # from the data README
    assert np.bincount(labels).tolist() == counts


def test_load_mnist_rejects_wrong_magic(data_mod, tmp_path):
    header = np.array([2049, 1, 28, 28], dtype=">u4").tobytes()  # label magic in an image file
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(header + bytes(28 * 28))
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(np.array([2049, 1], dtype=">u4").tobytes() + bytes([3]))
    with pytest.raises(data_mod.MnistFormatError, match=r"t10k-images-idx3-ubyte\.gz.*2051"):
        data_mod.load_mnist(tmp_path)


def test_load_mnist_missing_files(data_mod, tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        data_mod.load_mnist(tmp_path)


def test_load_mnist_reads_the_bundled_files_by_default(data_mod, monkeypatch):
    monkeypatch.delenv("MNIST_DIR", raising=False)
    images, labels, description = data_mod.load_mnist()
    assert images.shape == (10000, 28, 28) and str(MNIST_DIR) in description


def test_load_mnist_follows_mnist_dir(data_mod, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        data_mod.load_mnist()


def test_load_mnist_checks_the_sums(data_mod, tmp_path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "SHA256SUMS"):
        (tmp_path / name).write_bytes((MNIST_DIR / name).read_bytes())
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(labels) as fh:
        raw = bytearray(fh.read())
    raw[8] = (raw[8] + 1) % 10  # one label changed: still a valid IDX file
    with gzip.open(labels, "wb") as fh:
        fh.write(bytes(raw))
    with pytest.raises(data_mod.MnistFormatError, match=r"t10k-labels-idx1-ubyte\.gz: SHA-256"):
        data_mod.load_mnist(tmp_path)


def test_sklearn_digits_only_when_asked(data_mod):
    images, labels, description = data_mod.load_digits("sklearn")
    assert images.shape == (1797, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (1797,) and labels.dtype == np.uint8
    assert set(labels.tolist()) == set(range(10))
    assert images.max() == 255 and images[:, :4].max() == 0  # 0-255, digit centred
    assert "scikit-learn" in description


def test_download_offline_says_what_to_do(data_mod, monkeypatch):
    # the quick network check is the seam: this machine may or may not be online
    monkeypatch.setattr(data_mod, "_network_reachable", lambda *a, **k: False)
    with pytest.raises(ConnectionError, match="bundled test set"):
        data_mod.load_digits("download")


def test_write_pngs_and_labels(data_mod, mnist, tmp_path):
    from PIL import Image

    images, labels = mnist
    folder = tmp_path / "inputs"
    paths = data_mod.write_pngs(images, labels, folder, start=42, count=3)
    assert [p.name for p in paths] == ["00042.png", "00043.png", "00044.png"]
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in paths]
    with Image.open(paths[0]) as png:
        assert png.mode == "L" and png.size == (28, 28)
        assert np.array_equal(np.asarray(png), images[42])

    csv_path = data_mod.write_labels_csv(data_mod.labels_by_file(paths, labels), tmp_path / "l.csv")
    with open(csv_path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "label"]
    assert rows[1:] == [[f"{i:05d}.png", str(labels[i])] for i in (42, 43, 44)]


def test_data_cli(data_mod, mnist, tmp_path, capsys):
    out = tmp_path / "sample"
    argv = ["--out", str(out), "--count", "5", "--start", "10"]  # the bundled files
    assert data_mod.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}.png" for i in range(10, 15)]
    labels_csv = tmp_path / "sample_labels.csv"  # next to the folder, not inside it
    assert pd.read_csv(labels_csv)["label"].tolist() == mnist[1][10:15].tolist()
    assert "wrote 5 PNGs" in capsys.readouterr().out


# --------------------------------------------------------------------------- train.py


def test_train_cli_writes_model_and_metrics(train_mod, mnist, tmp_path, capsys):
    argv = ["--mnist-dir", str(MNIST_DIR), "--out", str(tmp_path), "--framework", "torch",
            "--epochs", "1"]  # fmt: skip
    assert train_mod.main(argv) == 0
    assert (tmp_path / "torch" / "model" / "model.pt").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["torch"]["heldout_images"] == 2000
    assert 0.5 < metrics["torch"]["heldout_accuracy"] <= 1.0
    assert "held-out accuracy" in capsys.readouterr().out


def test_train_and_data_cli_on_sklearn_digits_when_asked(train_mod, data_mod, tmp_path, capsys):
    argv = ["--source", "sklearn", "--out", str(tmp_path), "--framework", "torch", "--epochs", "2"]
    assert train_mod.main(argv) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["torch"]["train_images"] == 1437  # the first 80 % of 1,797
    assert metrics["torch"]["heldout_images"] == 360
    assert "scikit-learn" in metrics["data"]
    out = tmp_path / "digits"
    argv = ["--source", "sklearn", "--out", str(out), "--count", "3", "--start", "heldout"]
    assert data_mod.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["01437.png", "01438.png", "01439.png"]


def test_torch_model_accuracy(torch_model):
    out, metrics = torch_model
    assert (out / "torch" / "model" / "model.pt").is_file()
    assert metrics["heldout_accuracy"] >= MIN_ACCURACY, metrics


def test_keras_model_accuracy(keras_model):
    out, metrics = keras_model
    assert (out / "keras" / "model" / "model.keras").is_file()
    assert metrics["heldout_accuracy"] >= MIN_ACCURACY, metrics


# --------------------------------------------------------------------------- scoring scripts


def test_torch_batch_driver(torch_model, scored_pngs, monkeypatch):
    out, _ = torch_model
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(out / "torch"))
    driver = _import_file(
        EXAMPLE / "deployment-torch" / "code" / "batch_driver.py",
        "mnist_torch_batch_driver",
        imports=("mnist_classifier",),
    )
    result = _score(driver, *scored_pngs)
    assert result["probability"].between(0.0, 1.0).all()
    assert result["probability"].median() > 0.9  # exp(log_softmax): real probabilities


def test_keras_batch_driver(keras_model, scored_pngs, monkeypatch):
    out, _ = keras_model
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(out / "keras"))
    driver = _import_file(
        EXAMPLE / "deployment-keras" / "code" / "batch_driver.py", "mnist_keras_batch_driver"
    )
    result = _score(driver, *scored_pngs)
    # softmax applied to a softmax output, as in the reference: at most e / (e + 9)
    ceiling = math.e / (math.e + 9)
    assert (result["probability"] > 0.1).all()
    assert (result["probability"] <= ceiling + 1e-6).all()
    assert result["probability"].median() > ceiling - 0.01
