"""alexnet-small (models/alexnet-small.toml) in PyTorch, for the reference side of the benches."""

import torch
from torch import nn


class AlexNetSmall(nn.Module):
    """Same layer names as the declared architecture. With `record`, forward keeps every layer's input (with its
    gradient retained) in `self.inputs`, so a backward pass leaves the relevance at every layer."""

    def __init__(self, classes, record=False):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
            nn.Conv2d(128, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(64 * 4 * 4, 256), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, classes))
        self.layers = [*self.features, self.avgpool, self.flatten, *self.classifier]
        self.record = record
        self.inputs = []

    def forward(self, x):
        if not self.record:
            return self.classifier(self.flatten(self.avgpool(self.features(x))))
        self.inputs = []
        for layer in self.layers:
            if x.requires_grad:
                x.retain_grad()
            self.inputs.append(x)
            x = layer(x)
        return x
