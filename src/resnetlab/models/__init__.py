"""Network definitions: pure nn.Modules and the registry that names them."""

from . import crossblock, densenet, highway, resnet, vgg  # noqa: F401  (importing registers each family)
from .registry import ModelInfo, create_model, list_models, model_info, register_model, register_variant
from .resnet import ResNet, ResNetConfig

__all__ = [
    "ModelInfo",
    "ResNet",
    "ResNetConfig",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "register_variant",
]
