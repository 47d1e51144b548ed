"""Fusion methods behind one interface, created by name: ``create_method("maefuse-compact")``."""

from fusebench.methods.base import (
    METHODS,
    FusionMethod,
    WeightsError,
    create_method,
    list_methods,
    register_method,
)

# Importing a family's module registers its methods (one module per family).
from fusebench.methods import folder, pixel  # noqa: E402,F401
from fusebench.methods import maefuse  # noqa: E402,F401
from fusebench.methods import maefuse_official  # noqa: E402,F401
from fusebench.methods import classical, daefuse  # noqa: E402,F401

__all__ = ["METHODS", "FusionMethod", "WeightsError", "create_method", "list_methods", "register_method"]
