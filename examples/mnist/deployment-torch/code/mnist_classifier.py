"""The MNIST classifier of the torch deployment: a 784 -> 256 -> 128 -> 10 MLP.

The reference example (azureml-examples ``cli/endpoints/batch/deploy-models/mnist-classifier``)
defines this class as a ``pytorch_lightning.LightningModule``. PyTorch Lightning is not part of
this project's environment, so it is a plain ``torch.nn.Module`` here; the layers, their names
(``layer_1``, ``layer_2``, ``layer_3``) and therefore the state-dict keys are the same, so a
``model.pt`` state dict saved from the reference's LightningModule loads into this class and
vice versa.

Input: images as the scoring script reads them, ``torchvision.io.read_image(path).float()``,
i.e. ``[batch, 1, 28, 28]`` (or ``[batch, 28, 28]``) with raw pixel values 0-255, not
normalised. Output: log-probabilities (``log_softmax``) over the 10 digits.
"""

import torch
from torch.nn import functional as F


class MnistClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()

        # mnist images are (1, 28, 28) (channels, height, width)
        self.layer_1 = torch.nn.Linear(28 * 28, 256)
        self.layer_2 = torch.nn.Linear(256, 128)
        self.layer_3 = torch.nn.Linear(128, 10)

    def forward(self, x):
        batch_size = x.size(0)

        # (b, 1, 28, 28) -> (b, 1*28*28)
        x = x.reshape(batch_size, -1)

        # layer 1 (b, 784) -> (b, 256)
        x = torch.relu(self.layer_1(x))

        # layer 2 (b, 256) -> (b, 128)
        x = torch.relu(self.layer_2(x))

        # layer 3 (b, 128) -> (b, 10)
        x = self.layer_3(x)

        # probability distribution over labels, as log-probabilities
        return F.log_softmax(x, dim=1)
