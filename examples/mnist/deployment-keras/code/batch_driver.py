# Scoring script of the Keras deployment (the batch endpoint calls init() once per scoring
# process, then run() once per mini-batch of file paths).
import glob
import os
from os.path import basename
from typing import List  # noqa: UP035 - written like the reference example

import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image
from tensorflow.keras.models import load_model


def init():
    global model

    # AZUREML_MODEL_DIR is an environment variable created during deployment
    model_path = os.path.join(os.environ["AZUREML_MODEL_DIR"], "model")

    # load the model. train.py writes model/model.keras (Keras 3 format); the reference
    # example registers a SavedModel folder instead (model/saved_model.pb + variables/,
    # written by Keras 2.9), which loads through tf-keras (TF_USE_LEGACY_KERAS=1).
    keras_files = sorted(glob.glob(os.path.join(model_path, "*.keras")))
    if keras_files:
        model = _load_keras3(keras_files[-1])
    else:
        model = load_model(model_path)


def _load_keras3(path):
    # tensorflow.keras is Keras 3 unless TF_USE_LEGACY_KERAS=1 made it tf-keras; the .keras
    # files train.py writes are Keras 3's, so load them with Keras 3 either way.
    import keras

    return keras.saving.load_model(path)


def run(mini_batch: List[str]) -> pd.DataFrame:  # noqa: UP006
    print(f"Executing run method over batch of {len(mini_batch)} files.")

    results = []
    for image_path in mini_batch:
        # [28, 28] uint8, raw 0-255: the model rescales and adds the channel axis itself
        data = Image.open(image_path)
        data = np.array(data)
        data_batch = tf.expand_dims(data, axis=0)

        # perform inference (verbose=0: no progress bar per image in the job log)
        pred = model.predict(data_batch, verbose=0)

        # Compute probabilities, classes and labels.
        # Like the reference example, softmax is applied to the model's output although the
        # model already ends in softmax: "probability" is softmax(probabilities), at most
        # e / (e + 9) ~= 0.232 for a certain prediction. Kept on purpose (faithful to the
        # reference, whose users parse these numbers); the class is unaffected.
        pred_prob = tf.math.reduce_max(tf.math.softmax(pred, axis=-1)).numpy()
        pred_class = tf.math.argmax(pred, axis=-1).numpy()

        results.append(
            {
                "file": basename(image_path),
                "class": pred_class[0],
                "probability": pred_prob,
            }
        )

    return pd.DataFrame(results)
