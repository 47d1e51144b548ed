"""DAE-Fuse discriminative blocks DM1/DM2: a Conv2D-LeakyReLU-BatchNorm stack and a fully connected layer.

The paper gives only that description; the depth, widths, stride 2 and the global average pooling before
the fully connected layer (so any patch size works) are fusebench's choices. The block returns logits;
the losses apply the sigmoid inside a numerically stable BCE. The BatchNorm is :class:`DistBatchNorm2d`:
plain BatchNorm2d in one process, statistics over the global batch under torchrun.
"""

from __future__ import annotations

from torch import Tensor, nn

from fusebench.training.distributed import DistBatchNorm2d


class Discriminator(nn.Module):
    """(N, 1, H, W) image in [0, 1] -> (N,) logit that the image is a real source of this block's modality."""

    def __init__(self, width: int = 32, layers: int = 4) -> None:
        super().__init__()
        stack: list[nn.Module] = []
        channels = 1
        for i in range(layers):
            out = width * 2 ** min(i, 3)
            stack += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2), DistBatchNorm2d(out)]
            channels = out
        self.features = nn.Sequential(*stack)
        self.fc = nn.Linear(channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3))).squeeze(1)
