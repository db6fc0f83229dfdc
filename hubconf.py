"""torch.hub entry points for a local checkout of resnetlab: one per registered model name.

    model = torch.hub.load("path/to/resnetlab", "resnet50", source="local", num_classes=10)
    model = torch.hub.load("path/to/resnetlab", "resnet50", source="local", weights="runs/exp/best.safetensors")

(torch.hub.list and torch.hub.help read GitHub repositories only; on a checkout, import this file and list its
public callables, which is what torch.hub.list does.)

Each entry takes resnetlab.create_model's keyword arguments, plus `weights`: a local file (a resnetlab run or
.safetensors, a torchvision or timm state dict). Nothing is downloaded.
"""

import sys as _sys
from pathlib import Path as _Path

dependencies = ["torch"]

# torch.hub puts this folder on sys.path, not its src/: import resnetlab from this checkout's src/ (so the hub
# runs the code it points at, even where another resnetlab is installed), then leave sys.path as it was; a
# resnetlab already imported in this process is the one used.
_SRC = _Path(__file__).resolve().parent / "src"
_sys.path.insert(0, str(_SRC))
try:
    from resnetlab.errors import UserError as _UserError
    from resnetlab.models import create_model as _create_model
    from resnetlab.models import list_models as _list_models
    from resnetlab.models import model_info as _model_info
    from resnetlab.models.pretrained import load_pretrained as _load_pretrained
finally:
    _sys.path.remove(str(_SRC))


def _entry(name: str):  # -> Callable[..., nn.Module]; torch.hub lists every public callable, so no imports here
    info = _model_info(name)

    def entry(weights=None, **kwargs):  # weights: str | Path | None; kwargs: create_model's
        if "pretrained" in kwargs:
            raise _UserError(f"{name}: pass weights=<a local weights file> instead of pretrained; nothing downloads")
        model = _create_model(name, **kwargs)
        if weights is not None:
            _load_pretrained(model, weights)  # a head of another size is dropped and stays freshly initialised
        return model

    entry.__name__ = entry.__qualname__ = name
    facts = ", ".join(str(f) for f in (info.dataset, info.result) if f)
    entry.__doc__ = (
        f"{info.description or name} ({facts}). Keyword arguments: resnetlab.create_model's "
        "(num_classes, in_chans, features_only, config fields); weights: a local weights file."
    )
    return entry


# Generated from the registry: a new registered name is a hub entry with no edit here.
for _name in _list_models():
    if _name.isidentifier():
        globals()[_name] = _entry(_name)
