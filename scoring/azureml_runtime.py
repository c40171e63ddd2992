"""Azure ML's own runtime: the packages this project stands in for, and the ``azureml`` imports.

Azure ML's batch deployment docs tell every user to list ``azureml-core`` and
``azureml-dataset-runtime[fuse]`` in a deployment's conda file, "required by batch
deployments": on the platform they are the runtime that mounts the inputs and drives the
scoring script. Here that runtime is prefect-batch-endpoints itself, so a deployment folder
brought over unchanged names packages that are neither the script's dependencies nor
needed. :data:`PLATFORM_RUNTIME` is the named set of them, by what they do on the platform:

- the SDK v1 core and its metapackage: ``azureml-core``, ``azureml-sdk``;
- input mounting, the ``[fuse]`` data runtime: ``azureml-dataset-runtime``,
  ``azureml-dataprep``, ``azureml-dataprep-native``, ``azureml-dataprep-rslex``;
- the serving stack of the platform's images: ``azureml-defaults``,
  ``azureml-inference-server-http``;
- workspace integration: ``azureml-mlflow`` (MLflow's ``azureml://`` tracking store, which the
  platform adds to MLflow models' environments) and ``azureml-telemetry``;
- the parallel runner batch deployments are built on: ``azureml-pipeline-core``,
  ``azureml-pipeline-steps`` (ParallelRunStep).

The rule: a package is in the set because the platform's runtime needs it, not because its
name starts with ``azureml-``. Packages a model or script needs to *work* stay checked like
any other: ``azureml-fsspec``, the AutoML runtimes (``azureml-automl-*``,
``azureml-train-automl-*``), ``azureml-interpret``, ``azureml-contrib-*`` (experimental SDK
extensions a script imports for its own features) and ``azure-ai-ml``.

A script that really imports ``azureml.*`` without the package installed gets, from
:func:`install_import_hook` (run in every scoring process), a ``ModuleNotFoundError`` that
says this project does not provide the module, instead of a bare "No module named". An
installed package is always used as it is: the hook is the last finder consulted.
"""

from __future__ import annotations

import importlib.abc
import re
import sys
from types import FrameType

#: The Azure ML runtime packages a conda file may name and this project provides in their
#: place (canonical names, PEP 503); see the module docstring for why each is here.
PLATFORM_RUNTIME = frozenset(
    {
        "azureml-core",
        "azureml-sdk",
        "azureml-dataset-runtime",
        "azureml-dataprep",
        "azureml-dataprep-native",
        "azureml-dataprep-rslex",
        "azureml-defaults",
        "azureml-inference-server-http",
        "azureml-mlflow",
        "azureml-telemetry",
        "azureml-pipeline-core",
        "azureml-pipeline-steps",
    }
)

#: Modules under ``azureml.`` that ship in azureml-core rather than a package of their own.
_IN_CORE = {"core", "data", "exceptions", "history", "_base_sdk_common", "_restclient"}


def canonical(name: str) -> str:
    """A distribution name as PEP 503 normalises it (``Azureml_Core`` → ``azureml-core``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_platform_runtime(name: str) -> bool:
    """Whether the distribution ``name`` is part of Azure ML's own runtime (see above)."""
    return canonical(name) in PLATFORM_RUNTIME


def azureml_package(module: str) -> str:
    """The pip package that provides ``azureml.<module>`` (``azureml.core`` → azureml-core)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in _IN_CORE or parts[1].startswith("_"):
        return "azureml-core"
    return "azureml-" + parts[1].replace("_", "-")


def missing_sdk_message(module: str) -> str:
    """What a script that imports ``module`` (an ``azureml`` module not installed) is told."""
    package = azureml_package(module)
    what = "the" if module in ("azureml", "azureml.core") else "part of the"
    return (
        f"{module} is {what} Azure ML SDK ({package}), which prefect-batch-endpoints does not "
        "provide: batch deployments here run without it; remove the import or install "
        f"{package} yourself"
    )


def _in_namespace(name: str) -> bool:
    return name == "azureml" or name.startswith("azureml.")


def _import_in_progress(frame: FrameType | None) -> str | None:
    """The outermost ``azureml`` module the import statement above ``frame`` is loading.

    None when the finder is consulted by something other than an import (a probe such as
    ``importlib.util.find_spec``, which must keep getting None for a missing module).
    """
    requested = None
    while frame is not None and frame.f_globals.get("__name__") == "importlib._bootstrap":
        if frame.f_code.co_name == "_find_and_load_unlocked":
            name = frame.f_locals.get("name")
            if isinstance(name, str) and _in_namespace(name):
                requested = name
        frame = frame.f_back
    return requested


class MissingAzureMLFinder(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: answers an ``import azureml…`` that nothing else could.

    It raises the ModuleNotFoundError of :func:`missing_sdk_message`; for every other name,
    and for probes, it returns None as a finder that knows nothing would.
    """

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102 - importlib protocol
        if not _in_namespace(fullname):
            return None
        requested = _import_in_progress(sys._getframe(1))
        if requested is None:
            return None
        raise ModuleNotFoundError(missing_sdk_message(requested), name=requested)


def install_import_hook() -> None:
    """Append :class:`MissingAzureMLFinder` to ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, MissingAzureMLFinder) for finder in sys.meta_path):
        sys.meta_path.append(MissingAzureMLFinder())
