"""MaeFuse: MAE features, the CFM/MFM fusion layer, guided training, and its baselines on the same backbone."""

from fusebench.methods.maefuse.fusion import CrossAttention, FusionLayer
from fusebench.methods.maefuse.model import MaeFuse, checkpoint_filter_fn, create_for_training, default_cfgs
from fusebench.methods.maefuse.train import GuidedConfig, train_guided

__all__ = [
    "CrossAttention",
    "FusionLayer",
    "GuidedConfig",
    "MaeFuse",
    "checkpoint_filter_fn",
    "create_for_training",
    "default_cfgs",
    "train_guided",
]
