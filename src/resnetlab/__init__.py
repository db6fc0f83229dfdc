"""resnetlab: residual networks on PyTorch."""

from .errors import ConfigError, UserError
from .models import create_model, list_models, model_info

__version__ = "0.1.0"
__all__ = ["ConfigError", "UserError", "create_model", "list_models", "model_info", "__version__"]
