"""Image folders are cached a little larger than the network's input and evaluated on the centre crop
(torchvision's and timm's Resize + CenterCrop); training crops from the whole stored square; the weights
record the scheme, so that predict prepares a file exactly as evaluation did."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from resnetlab.data import AugmentConfig, BatchLoader, load_dataset
from resnetlab.data.folders import stored_size
from resnetlab.errors import UserError
from resnetlab.inference import preprocess
from resnetlab.training import load_config
from resnetlab.training.loop import fit
from resnetlab.training.setup import with_init_defaults

RAW = dict(mean=(0.0,), std=(1 / 255,))  # normalisation that leaves the 0..255 values as they are


def gradient_folder(root, per_class: int = 3, size: tuple[int, int] = (48, 36)):
    """Smooth, non-square RGB images (so that resampling differences stay small), two classes."""
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            img = np.stack([xx * 5 + 20 * i, yy * 6, np.full_like(xx, 100 + 50 * c)], -1)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"c{c}" / f"{i}.png")
    return root


def test_stored_size_is_the_input_over_the_centre_crop():
    assert stored_size(224) == 256 and stored_size(32) == 37 and stored_size(28, 1.0) == 28
    with pytest.raises(UserError, match="centre_crop=1.5 must be in"):
        stored_size(32, 1.5)


def test_evaluation_sees_the_centre_crop_as_torchvision_resize_and_centercrop(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))
    folder = gradient_folder(tmp_path / "grads")
    data = load_dataset(str(folder), "train", image_size=16, val_fraction=0.0)
    assert data.images.shape[1:] == (18, 18, 3) and data.view() == (16, 16)
    x, _ = next(iter(BatchLoader(data, 6, train=False, **RAW)))
    assert x.shape == (6, 3, 16, 16)
    assert torch.allclose(x, torch.from_numpy(np.asarray(data.images)[:, 1:17, 1:17]).permute(0, 3, 1, 2).float())
    peer = v2.Compose([v2.Resize(18), v2.CenterCrop(16), v2.PILToTensor()])
    files = [folder / f for f in data.files]
    expected = torch.stack([peer(Image.open(f).convert("RGB")) for f in files]).float()
    assert (x - expected).abs().mean() < 2.0  # grey levels: the same view, resampled by another path


def test_training_crops_come_from_the_whole_stored_square(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))
    data = load_dataset(str(gradient_folder(tmp_path / "grads")), "train", image_size=16, val_fraction=0.0)
    whole = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    loader = BatchLoader(data, 6, train=True, augment=whole, drop_last=False, **RAW)
    plan = loader.plan(0)
    assert torch.allclose(plan.crops[:, 2:], torch.full((6, 2), 18.0))  # boxes over the 18 x 18 stored image
    x, _ = next(iter(loader))
    assert x.shape == (6, 3, 16, 16)
    stored = torch.from_numpy(np.asarray(data.images)[plan.order.numpy()]).permute(0, 3, 1, 2).float()
    shrunk = torch.nn.functional.interpolate(stored, size=(16, 16), mode="bilinear", align_corners=False)
    assert (x - shrunk).abs().max() < 1e-3  # the whole square, scaled to the network's input
    plain = BatchLoader(data, 6, train=True, augment=AugmentConfig(), drop_last=False, **RAW)
    x, _ = next(iter(plain))  # no crops asked for: the evaluation view
    assert torch.equal(x, stored[:, :, 1:17, 1:17])


def test_predict_prepares_a_file_as_evaluation_did_and_init_keeps_the_scheme(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))
    folder = gradient_folder(tmp_path / "grads", per_class=4)
    settings = ["model=resnet8", f"data={folder}", "data.image_size=16", "data.centre_crop=0.8", "epochs=1",
                "batch_size=4", "val_fraction=0.25", "quiet=true", "output.tensorboard=false"]  # fmt: skip
    settings.append(f"out={tmp_path}")
    result = fit(load_config(None, settings))
    from resnetlab.inference import load

    _, meta = load(result.run_dir)
    assert meta.input_size == (3, 16, 16) and meta.resize == 20  # 16 / 0.8
    data = load_dataset(str(folder), "train", image_size=16, centre_crop=0.8, val_fraction=0.0)
    loaded, _ = next(iter(BatchLoader(data, 8, train=False, mean=meta.mean, std=meta.std)))
    prepared, skipped = preprocess([folder / f for f in data.files], meta)
    assert not skipped and torch.allclose(prepared, loaded, atol=1e-5)
    again = with_init_defaults(load_config(None, []), meta)
    assert (again.data.image_size, again.data.centre_crop) == (16, 0.8)
