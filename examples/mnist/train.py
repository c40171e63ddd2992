"""Train the two models of the MNIST batch-endpoint example, on CPU, in seconds.

    python examples/mnist/train.py \
        --out examples/mnist/.work/models [--framework torch|keras|both]

writes the registered-model folders the deployments expect::

    <out>/torch/model/model.pt      state dict of MnistClassifier (deployment-torch/code)
    <out>/keras/model/model.keras   Keras 3 model (TensorFlow backend)
    <out>/metrics.json              held-out accuracy, train time, split, data source

then register them (``pbe model create --name mnist-classifier-torch --type custom_model
--path <out>/torch/model``); at scoring time ``AZUREML_MODEL_DIR`` is the folder holding
``model/``, as in Azure ML.

Data: the 10,000-image MNIST test set bundled in ``examples/mnist/data/`` (see data.py for
other sources) is split deterministically: the first ``--train-count`` (8,000) images train,
the rest (2,000) are held out and only scored. Both models take raw 0-255 pixels, exactly as
their scoring scripts feed them, and the held-out accuracy is measured on the saved model
with such inputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# OpenMP threads that sleep instead of spinning while they wait: on a shared 2-core machine
# spinning torch threads make training 5-10x slower whenever another process is busy.
# (Read when torch loads its OpenMP runtime, so it must be set before torch is imported.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

# examples/mnist is sys.path[0] when this runs as a script
from data import (  # noqa: E402
    DEFAULT_TRAIN_COUNT,
    add_source_arguments,
    default_train_count,
    load_digits,
)

HERE = Path(__file__).resolve().parent
TORCH_CODE = HERE / "deployment-torch" / "code"
THREADS = 2
TORCH_EPOCHS = 40
KERAS_EPOCHS = 8


def split(images: np.ndarray, labels: np.ndarray, train_count: int = DEFAULT_TRAIN_COUNT):
    """``(x_train, y_train), (x_heldout, y_heldout)``: the first ``train_count`` images train."""
    if not 0 < train_count < len(images):
        raise ValueError(f"train_count must be between 1 and {len(images) - 1}, not {train_count}")
    train = images[:train_count], labels[:train_count]
    heldout = images[train_count:], labels[train_count:]
    return train, heldout


# --------------------------------------------------------------------------- torch


def _mnist_classifier_class():
    """``MnistClassifier`` from the deployment's code folder (the file the script imports)."""
    spec = importlib.util.spec_from_file_location(
        "_mnist_example_classifier", TORCH_CODE / "mnist_classifier.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MnistClassifier


def _random_shift(batch, generator, margin: int = 2):
    """Translate each ``[B, 1, 28, 28]`` image by up to ``margin`` pixels (zero fill)."""
    import torch
    from torch.nn import functional as F

    size = batch.shape[-1]
    padded = F.pad(batch, (margin, margin, margin, margin))
    n = batch.shape[0]
    dy = torch.randint(0, 2 * margin + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * margin + 1, (n,), generator=generator)
    idx = torch.arange(size)
    rows = (dy[:, None] + idx[None, :])[:, :, None]
    cols = (dx[:, None] + idx[None, :])[:, None, :]
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


def _check_torch_can_load():
    """Fail clearly instead of crashing: torch's optimizers import ``torch._dynamo``, which
    imports triton, and triton segfaults when TensorFlow was loaded first in the process."""
    if (
        "tensorflow" in sys.modules
        and "torch._dynamo" not in sys.modules
        and importlib.util.find_spec("triton") is not None
    ):
        raise RuntimeError(
            "TensorFlow is already loaded in this process, and torch's optimizers would now "
            "crash it while importing triton; train torch first (or import torch._dynamo "
            "before tensorflow), or use a separate process"
        )


def train_torch(
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int = TORCH_EPOCHS,
    batch_size: int = 128,
    seed: int = 0,
):
    """Train ``MnistClassifier``; the returned model expects raw 0-255 pixels.

    Training runs on pixels / 255 (Adam is happiest there) with small random shifts; the
    1/255 is then folded into ``layer_1``'s weights, so ``model(raw)`` equals the trained
    network on ``raw / 255`` exactly and the architecture stays the reference's.
    """
    _check_torch_can_load()
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    model = _mnist_classifier_class()()
    x = torch.tensor(x_train, dtype=torch.float32).unsqueeze(1) / 255.0
    y = torch.tensor(y_train, dtype=torch.long)
    steps_per_epoch = (len(x) + batch_size - 1) // batch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=3e-3, total_steps=epochs * steps_per_epoch
    )
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            loss = F.nll_loss(model(_random_shift(x[batch], generator)), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        model.layer_1.weight.div_(255.0)  # now takes 0-255 inputs, like the scoring script's
    return model


def save_torch(model, out: Path) -> Path:
    import torch

    path = Path(out) / "torch" / "model" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def evaluate_torch(model_file: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the saved state dict on raw 0-255 ``[N, 1, 28, 28]`` floats."""
    import torch

    model = _mnist_classifier_class()()
    model.load_state_dict(torch.load(model_file, map_location="cpu", weights_only=True))
    model.eval()
    with torch.no_grad():
        inputs = torch.tensor(x, dtype=torch.float32).unsqueeze(1)  # like read_image().float()
        predicted = model(inputs).argmax(dim=1).numpy()
    return float((predicted == y).mean())


# --------------------------------------------------------------------------- keras


def _keras():
    """Keras 3 on TensorFlow, limited to ``THREADS`` threads (set before TF starts)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    except RuntimeError:  # TensorFlow already initialised in this process: keep its settings
        pass
    return keras, tf


def build_keras_model():
    """A small conv net on raw ``[28, 28]`` 0-255 pixels, ending in softmax like the reference.

    The input is what the scoring script passes: ``np.array(Image.open(path))`` with a batch
    axis added, i.e. ``[1, 28, 28]`` uint8. Rescaling and the channel axis are in the model.
    """
    keras, _ = _keras()
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            keras.layers.Rescaling(1.0 / 255.0),
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=0),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.25, seed=0),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="mnist_classifier",
    )


def train_keras(
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int = KERAS_EPOCHS,
    batch_size: int = 64,
    seed: int = 0,
):
    keras, tf = _keras()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build_keras_model()
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    return model


def save_keras(model, out: Path) -> Path:
    path = Path(out) / "keras" / "model" / "model.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def evaluate_keras(model_file: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the saved ``.keras`` model on raw uint8 ``[N, 28, 28]`` images."""
    keras, _ = _keras()
    model = keras.saving.load_model(model_file)
    predicted = model.predict(x, batch_size=500, verbose=0).argmax(axis=-1)
    return float((predicted == y).mean())


# --------------------------------------------------------------------------- driver

FRAMEWORKS = {
    "torch": (train_torch, save_torch, evaluate_torch, TORCH_EPOCHS),
    "keras": (train_keras, save_keras, evaluate_keras, KERAS_EPOCHS),
}


def train_and_save(
    framework: str,
    images: np.ndarray,
    labels: np.ndarray,
    out: Path,
    *,
    train_count: int = DEFAULT_TRAIN_COUNT,
    epochs: int | None = None,
    seed: int = 0,
) -> dict:
    """Train one framework's model, save it under ``out``, return its metrics."""
    train, save, evaluate, default_epochs = FRAMEWORKS[framework]
    epochs = default_epochs if epochs is None else epochs
    (x_train, y_train), (x_held, y_held) = split(images, labels, train_count)
    started = time.perf_counter()
    model = train(x_train, y_train, epochs=epochs, seed=seed)
    train_seconds = time.perf_counter() - started
    model_file = save(model, Path(out))
    accuracy = evaluate(model_file, x_held, y_held)
    return {
        "heldout_accuracy": round(accuracy, 4),
        "train_seconds": round(train_seconds, 2),
        "epochs": epochs,
        "seed": seed,
        "train_images": len(x_train),
        "heldout_images": len(x_held),
        "model_file": str(model_file),
        "model_folder": str(model_file.parent),
    }


def write_metrics(out: Path, results: dict, description: str, train_count: int) -> Path:
    """Merge ``results`` into ``out/metrics.json`` (so one framework can be retrained alone)."""
    path = Path(out) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics.update(results)
    metrics["data"] = description
    metrics["split"] = f"first {train_count} images train, the rest are held out"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train the MNIST example's torch and Keras models on CPU."
    )
    add_source_arguments(parser)
    parser.add_argument("--out", required=True, help="folder for torch/, keras/ and metrics.json")
    parser.add_argument("--framework", choices=["torch", "keras", "both"], default="both")
    parser.add_argument(
        "--train-count",
        type=int,
        help=f"images used for training (default {DEFAULT_TRAIN_COUNT} of MNIST's 10,000, or "
        "the first 80 %% of a smaller set); the rest are held out",
    )
    parser.add_argument("--epochs", type=int, help="override the framework's default epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    images, labels, description = load_digits(args.source, args.mnist_dir)
    print(f"data: {description}")
    train_count = args.train_count or default_train_count(len(images))
    out = Path(args.out)
    frameworks = ["torch", "keras"] if args.framework == "both" else [args.framework]
    results = {}
    for framework in frameworks:
        metrics = train_and_save(
            framework,
            images,
            labels,
            out,
            train_count=train_count,
            epochs=args.epochs,
            seed=args.seed,
        )
        results[framework] = metrics
        print(
            f"{framework}: held-out accuracy {metrics['heldout_accuracy']:.4f} on "
            f"{metrics['heldout_images']} images, trained in {metrics['train_seconds']:.1f} s "
            f"({metrics['epochs']} epochs on {metrics['train_images']} images) -> "
            f"{metrics['model_file']}"
        )
        print(
            f"  register: pbe model create --name mnist-classifier-{framework} "
            f"--type custom_model --path {metrics['model_folder']}"
        )
    print(f"metrics: {write_metrics(out, results, description, train_count)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
