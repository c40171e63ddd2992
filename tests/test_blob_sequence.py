"""The platform's MNIST sequence with its data in Azure Blob Storage (a real Azurite).

The example's torch deployment folder, unchanged (its conda file lists the platform's
``azureml-core`` and ``azureml-dataset-runtime[fuse]``), behind an endpoint of a workspace of
its own; real held-out digits as PNG blobs in a private container; a blob datastore in the
platform's YAML with an account key; a folder data asset of that datastore path. Invoked by
``azureml:<asset>@latest`` and by the container's URL with ``--input-type uri_folder``, both
writing to the blob datastore: the predictions equal the same script in a plain loop.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from azurite_server import ACCOUNT, ENDPOINT_VARIABLE, KEY
from conftest import OwnWorkspace
from support import EXAMPLE

from flows.planning import plan_mini_batches

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    # the reference script reads images with torchvision.io, as written
    pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning"),
]

COUNT = 40
DEPLOYMENT = EXAMPLE / "deployment-torch"


def plain_loop(model_dir: Path, files: list[str], mini_batch_size: int) -> bytes:
    """The deployment's script called in a plain loop over the same mini-batches."""
    import torch

    code = DEPLOYMENT / "code"
    os.environ["AZUREML_MODEL_DIR"] = str(model_dir)
    sys.path.insert(0, str(code))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a scoring process (Dask workers run single-threaded)
    try:
        spec = importlib.util.spec_from_file_location("plain_driver", code / "batch_driver.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.init()
        chunks = [module.run(list(mb.files)).to_csv(header=None, index=None, sep=" ")
                  for mb in plan_mini_batches(files, mini_batch_size)]  # fmt: skip
    finally:
        torch.set_num_threads(threads)
        sys.path.remove(str(code))
        sys.modules.pop("mnist_classifier", None)
        del os.environ["AZUREML_MODEL_DIR"]
    return "".join(chunks).encode()


def test_the_mnist_sequence_with_data_in_blob_storage(azurite, tmp_path):
    data = (tmp_path / "digits", tmp_path / "digits_labels.csv")
    for script, args in (("train.py", ["--out", str(tmp_path / "models"), "--framework", "torch",
                                       "--train-count", "2000", "--epochs", "2"]),
                         ("data.py", ["--out", str(data[0]), "--count", str(COUNT), "--start",
                                      "heldout", "--labels-csv", str(data[1])])):  # fmt: skip
        subprocess.run([sys.executable, str(EXAMPLE / script), *args], check=True,
                       capture_output=True, timeout=600)  # fmt: skip
    pngs = sorted(data[0].iterdir())
    azurite.put("mnist", {f"digits/{p.name}": p.read_bytes() for p in pngs})  # private

    space = OwnWorkspace(tmp_path / "home", **{ENDPOINT_VARIABLE: azurite.endpoint})
    try:
        space.ok("model", "create", "--name", "mnist-classifier-torch", "--type", "custom_model",
                 "--path", str(tmp_path / "models" / "torch" / "model"))  # fmt: skip
        space.ok("compute", "create", "-n", "batch-cluster", "--type", "amlcompute",
                 "--min-instances", "0", "--max-instances", "5")  # fmt: skip
        (tmp_path / "lake.yml").write_text(
            "$schema: https://azuremlschemas.azureedge.net/latest/azureBlob.schema.json\n"
            f"name: mnistlake\ntype: azure_blob\naccount_name: {ACCOUNT}\n"
            f"container_name: mnist\ncredentials:\n  account_key: {KEY}\n"
        )
        space.ok("datastore", "create", "-f", str(tmp_path / "lake.yml"))
        (tmp_path / "data.yml").write_text(
            "$schema: https://azuremlschemas.azureedge.net/latest/data.schema.json\n"
            "name: mnist-digits\ntype: uri_folder\n"
            "path: azureml://datastores/mnistlake/paths/digits/\n"
        )
        space.ok("data", "create", "-f", str(tmp_path / "data.yml"))
        space.ok("batch-endpoint", "create", "--file", str(EXAMPLE / "endpoint.yml"),
                 "--name", "mnist-blob")  # fmt: skip
        created = space.ok("batch-deployment", "create", "--file",
                           str(DEPLOYMENT / "deployment.yml"), "--endpoint-name", "mnist-blob",
                           "--set-default")  # fmt: skip
        assert "azureml-core" in created.err and "INFO:" in created.err  # skipped, and said

        outputs = {}
        for name, input_args in (
            ("asset", ["--input", "azureml:mnist-digits@latest"]),
            ("url", ["--input", azurite.url("mnist", "digits/"), "--input-type", "uri_folder"]),
        ):
            done = space.ok("batch-endpoint", "invoke", "--name", "mnist-blob", *input_args,
                            "--output-path", f"azureml://datastores/mnistlake/paths/out/{name}/",
                            "--wait")  # fmt: skip
            job = json.loads(done.out)
            assert job["status"] == "Completed", job
            outputs[name] = azurite.get("mnist", f"out/{name}/predictions.csv")
            assert KEY not in done.out + done.err
    finally:
        space.pbe("server", "stop")

    expected = plain_loop(tmp_path / "models" / "torch", [str(p) for p in pngs], 10)
    assert outputs["asset"] == outputs["url"] == expected
    labels = dict(line.split(",") for line in data[1].read_text().split()[1:])
    rows = [line.split(" ") for line in expected.decode().splitlines()]
    assert [row[0] for row in rows] == [p.name for p in pngs]
    assert sum(labels[file] == predicted for file, predicted, _ in rows) >= COUNT * 0.8
