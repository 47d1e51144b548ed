"""The MAE backbone of the MaeFuse family: model, pre/post-processing, official checkpoints, pre-training."""

from fusebench.methods.mae.backbone import MAE_ARCHS, MaskedAutoencoder, build_mae, sincos_pos_embed
from fusebench.methods.mae.preprocess import from_mae_output, to_mae_input

__all__ = [
    "MAE_ARCHS",
    "MaskedAutoencoder",
    "build_mae",
    "from_mae_output",
    "sincos_pos_embed",
    "to_mae_input",
]
