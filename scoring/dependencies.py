"""Import names versus the pip packages that provide them, for hints that can be pasted."""

from __future__ import annotations

from scoring.azureml_runtime import azureml_package

# Import name → distribution name, where the two differ.
_PIP_NAMES = {
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "skimage": "scikit-image",
    "pytorch_lightning": "pytorch-lightning",
    "lightning": "lightning",
    "tf_keras": "tf-keras",
    "tensorflow": "tensorflow-cpu",
    "mlflow": "mlflow",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
}


def pip_name(module: str) -> str:
    """The package ``pip install`` needs for ``import module``."""
    top = module.split(".", 1)[0]
    if top == "azureml":  # a namespace: azureml.core is azureml-core, azureml.fsspec ...
        return azureml_package(module)
    return _PIP_NAMES.get(top, top.replace("_", "-"))
