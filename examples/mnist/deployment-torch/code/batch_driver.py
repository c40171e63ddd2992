# Scoring script of the torch deployment (the batch endpoint calls init() once per scoring
# process, then run() once per mini-batch of file paths).
import glob
import os
from os.path import basename
from typing import List  # noqa: UP035 - written like the reference example

import pandas as pd
import torch
import torchvision
from mnist_classifier import MnistClassifier


def init():
    global model
    global device

    # AZUREML_MODEL_DIR is an environment variable created during deployment.
    # It is the folder that holds the registered model folder (here: model/model.pt).
    model_path = os.environ["AZUREML_MODEL_DIR"]
    model_file = sorted(glob.glob(f"{model_path}/*/*.pt"))[-1]

    # model.pt is a state dict: load the tensors only and put them into the architecture.
    model = MnistClassifier()
    model.load_state_dict(torch.load(model_file, map_location="cpu", weights_only=True))
    model.eval()

    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    model.to(device)


def run(mini_batch: List[str]) -> pd.DataFrame:  # noqa: UP006
    print(f"Executing run method over batch of {len(mini_batch)} files.")

    results = []
    with torch.no_grad():
        for image_path in mini_batch:
            # [1, 28, 28] with raw pixel values 0-255: the model was trained on exactly that
            image_data = torchvision.io.read_image(image_path).float()
            batch_data = image_data.expand(1, -1, -1, -1)
            input = batch_data.to(device)

            # perform inference: the model returns log-probabilities (log_softmax)
            output = model(input)

            # Compute probabilities, classes and labels
            probs = torch.exp(output)
            predicted_prob, predicted_class = torch.max(probs, dim=-1)

            results.append(
                {
                    "file": basename(image_path),
                    "class": predicted_class.cpu().numpy()[0],
                    "probability": predicted_prob.cpu().numpy()[0],
                }
            )

    return pd.DataFrame(results)
