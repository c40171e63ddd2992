"""Model formats that need a setting before the script imports its framework.

A Keras 2 SavedModel folder (``saved_model.pb`` + ``keras_metadata.pb`` + ``variables/``,
what the reference example ships) is refused by Keras 3, which TensorFlow 2.16+ uses for
``tf.keras``. It loads through the ``tf-keras`` package when ``TF_USE_LEGACY_KERAS=1`` is
set before TensorFlow is imported, so a deployment whose model is in that format gets the
variable in its scoring processes. A value the deployment sets itself always wins.
"""

from __future__ import annotations

import os
from pathlib import Path

_MAX_DEPTH = 3


def is_legacy_keras(model_dir: str | Path) -> bool:
    """True when the model folder holds a Keras 2 SavedModel (within a few levels)."""
    root = Path(model_dir)
    base_depth = len(root.parts)
    for folder, subfolders, files in os.walk(root, followlinks=True):
        if "keras_metadata.pb" in files and "saved_model.pb" in files:
            return True
        if len(Path(folder).parts) - base_depth >= _MAX_DEPTH:
            subfolders.clear()
    return False


def framework_environment(model_dir: str | Path) -> dict[str, str]:
    """Environment variables the model's format needs in the scoring process."""
    if is_legacy_keras(model_dir):
        return {"TF_USE_LEGACY_KERAS": "1"}
    return {}
