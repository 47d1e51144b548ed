"""Fusion methods behind one interface, created by name: ``create_method("maefuse-compact")``."""

# Importing a family's module registers its methods (one module per family).
from fusebench.methods import (  # noqa: F401
    classical,
    daefuse,
    folder,
    maefuse,
    maefuse_official,
    pixel,
    zoo,
)
from fusebench.methods.base import (
    METHODS,
    FusionMethod,
    WeightsError,
    create_method,
    list_methods,
    register_method,
)

__all__ = ["METHODS", "FusionMethod", "WeightsError", "create_method", "list_methods", "register_method"]
