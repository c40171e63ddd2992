"""Legacy model formats: a Keras 2 SavedModel folder loads in an unchanged script."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import load_mnist, write_pngs, write_script

from scoring.model_formats import framework_environment, is_legacy_keras
from scoring.process import ScoringProcess
from scoring.spec import ScoringProcessSpec

pytestmark = pytest.mark.timeout(240)

# The reference example's Keras scoring script, as users have it.
REFERENCE_KERAS_SCRIPT = """
import os

import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image
from tensorflow.keras.models import load_model


def init():
    global model
    model_path = os.path.join(os.environ["AZUREML_MODEL_DIR"], "model")
    model = load_model(model_path)


def run(mini_batch):
    results = []
    for image_path in mini_batch:
        data = np.array(Image.open(image_path))
        data_batch = tf.expand_dims(data, axis=0)
        pred = model.predict(data_batch, verbose=0)
        pred_prob = tf.math.reduce_max(tf.math.softmax(pred, axis=-1)).numpy()
        pred_class = tf.math.argmax(pred, axis=-1).numpy()
        results.append([os.path.basename(image_path), pred_class[0], pred_prob])
    return pd.DataFrame(results)
"""

WRITE_KERAS2_SAVEDMODEL = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tf_keras as keras
model = keras.Sequential([
    keras.layers.Flatten(input_shape=(28, 28)),
    keras.layers.Dense(10, activation="softmax"),
])
model.save(sys.argv[1], save_format="tf")
"""


@pytest.fixture(scope="module")
def keras2_model_dir(tmp_path_factory):
    pytest.importorskip("tf_keras")
    root = tmp_path_factory.mktemp("registered")
    subprocess.run(
        [sys.executable, "-c", WRITE_KERAS2_SAVEDMODEL, str(root / "model")],
        check=True,
        timeout=180,
    )
    return root


def test_a_keras2_savedmodel_is_detected(keras2_model_dir, tmp_path):
    assert (keras2_model_dir / "model" / "keras_metadata.pb").exists()
    assert is_legacy_keras(keras2_model_dir)
    assert framework_environment(keras2_model_dir) == {"TF_USE_LEGACY_KERAS": "1"}
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.keras").write_bytes(b"zip")
    assert framework_environment(tmp_path) == {}


def test_the_reference_keras_script_loads_a_keras2_savedmodel_unchanged(keras2_model_dir, tmp_path):
    images, _ = load_mnist(3)
    paths = write_pngs(tmp_path / "digits", images)
    code = write_script(tmp_path / "code", REFERENCE_KERAS_SCRIPT, name="batch_driver.py")
    spec = ScoringProcessSpec(
        code_dir=str(code),
        scoring_script="batch_driver.py",
        model_dir=str(keras2_model_dir),
        output_dir=str(tmp_path),
        environment_variables={
            **framework_environment(keras2_model_dir),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        },
    )
    assert "TF_USE_LEGACY_KERAS" not in os.environ
    process = ScoringProcess(spec)
    process.start()
    try:
        outcome = process.run([str(p) for p in paths], timeout=120, want_rows=True)
    finally:
        process.kill()
    rows = outcome.rows.decode().splitlines()
    assert [row.split(" ")[0] for row in rows] == ["00000.png", "00001.png", "00002.png"]
