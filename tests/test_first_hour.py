"""A user's first hour with their own folder (issue 28): one resolution of the settings that `--print-config`,
`data info` and `train` share; the facts of a run said even under quiet=true; a folder that declares itself
flip-unsafe; the command line's small courtesies (a folder as the data, --version, options by name, near
matches for paths, eval without a test split)."""

import json
import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from resnetlab.cli import main
from resnetlab.training import load_config


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))


def digit_folder(root, per_class: int = 24):
    """Grey 28 x 28 PNGs in three class folders: what a user's own digits look like (not a named dataset)."""
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"d{c}").mkdir(parents=True)
        for i in range(per_class):
            img = np.clip(rng.normal(60 + 70 * c, 25, (28, 28)), 0, 255).astype(np.uint8)
            Image.fromarray(img, "L").save(root / f"d{c}" / f"{i}.png")
    return root


def cache_shapes(tmp_path) -> set[tuple[int, ...]]:
    shapes = set()
    for index in (tmp_path / "cache" / "folders").glob("*/index.json"):
        array = index.parent / json.loads(index.read_text())["array"]
        shapes.add(tuple(np.load(array, mmap_mode="r").shape[1:]))
    return shapes


def test_print_config_data_info_and_train_agree_on_a_folder(tmp_path, capsys):
    folder = digit_folder(tmp_path / "digits")
    assert main(["train", f"data={folder}", "--print-config"]) == 0
    printed = capsys.readouterr().out
    settings = yaml.safe_load(printed)  # still YAML, and a recipe: the comments are comments
    assert settings["data"]["image_size"] == 28 and settings["data"]["channels"] == 1
    assert settings["data"]["hflip"] == "true" and settings["model"]["name"] == "resnet20"
    assert re.search(r"image_size: 28 +# image size 28 x 28, grey: the median short side", printed)
    assert re.search(r"hflip: 'true' +# an image folder is flipped, as torchvision and timm do", printed)
    assert load_config(None, [f"data={folder}"]).data.image_size == 0  # printing chose nothing for the run itself

    assert main(["data", "info", str(folder)]) == 0
    info = capsys.readouterr().out
    assert "of 32x32x1 (H x W x C)" in info and "network input: 28x28" in info  # stored at 28 / 0.875
    assert "training flips images horizontally: yes" in info
    assert cache_shapes(tmp_path) == {(32, 32, 1)}  # the cache train uses, not a 256 x 256 x 3 one

    runs = tmp_path / "runs"
    assert main(["train", f"data={folder}", "schedule.iterations=1", "batch_size=8", f"out={runs}", "quiet=true"]) == 0
    (run,) = runs.iterdir()
    recorded = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert (recorded["image_size"], recorded["channels"], recorded["hflip"]) == (28, 1, "true")
    assert cache_shapes(tmp_path) == {(32, 32, 1)}  # one cache, shared by data info and train


def test_the_facts_of_a_run_are_said_under_quiet_and_a_flip_unsafe_folder_is_never_flipped(tmp_path, capsys):
    folder = digit_folder(tmp_path / "digits")
    (folder / "resnetlab.yaml").write_text("hflip: false\n")
    runs = tmp_path / "runs"
    settings = [f"data={folder}", "model=resnet8", "epochs=1", "batch_size=8", f"out={runs}", "quiet=true"]
    assert main(["train", *settings, "data.crop_padding=2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"resnet8: [\d,]+ parameters; digits: 65 train, 7 val images of 32x32x1 \(cropped to 28x28\); "
                     "device cpu", out)  # fmt: skip
    assert "validation: 7 images held out of train (stratified, 0.1, split seed 0)" in out
    assert "augmentations: pad-crop 2 (zeros), no flips (data.hflip)" in out
    assert "estimated length of the run: about" in out
    (run,) = runs.iterdir()
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["hflip"] == "false"
    assert main(["eval", str(run), "tta=flip"]) == 2
    assert "tta=flip scores mirror images, but digits means something else mirrored" in capsys.readouterr().err
    assert main(["data", "info", str(folder)]) == 0
    declared = folder / "resnetlab.yaml"
    assert f"training flips images horizontally: no (declared in {declared})" in capsys.readouterr().out


def test_a_folders_declaration_with_an_unknown_key_or_value_is_one_sentence(tmp_path, capsys):
    folder = digit_folder(tmp_path / "digits", per_class=4)
    (folder / "resnetlab.yaml").write_text("hfilp: false\n")
    assert main(["data", "info", str(folder)]) == 2
    assert "declares 'hfilp', which is unknown; a folder can declare hflip" in capsys.readouterr().err
    (folder / "resnetlab.yaml").write_text("hflip: sometimes\n")
    assert main(["data", "info", str(folder)]) == 2
    assert "hflip: 'sometimes' should be true or false" in capsys.readouterr().err


def test_train_folder_eval_without_a_test_split_version_options_and_near_paths(tmp_path, capsys):
    folder = digit_folder(tmp_path / "digits", per_class=8)
    runs = tmp_path / "runs"
    assert main(["train", str(folder), "model=resnet8", "epochs=1", "batch_size=8", f"out={runs}", "quiet=true"]) == 0
    assert f"training on the folder {folder} (as data={folder})" in capsys.readouterr().err
    (run,) = runs.iterdir()

    assert main(["eval", str(run)]) == 0  # a flat folder has no test split: its validation split, said so
    out = capsys.readouterr().out
    assert "note: the data has no test split, so its validation split is scored" in out and "(val, " in out

    assert main(["--version"]) == 0
    assert re.match(r"resnetlab \d+\.\d+\.\d+ \(torch ", capsys.readouterr().out)

    image = str(next((folder / "d0").iterdir()))
    assert main(["predict", str(run), image, "topk=2", "device=cpu", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["top"]) == 2
    assert main(["predict", str(run), image, "devcie=cpu"]) == 2
    assert "'devcie=cpu' is not one of out=, topk=, batch_size=, device= (did you mean device?)" in (
        capsys.readouterr().err
    )

    assert main(["train", f"data={folder}", f"init={runs / run.name[:-1]}", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert f"(did you mean {run}?)" in err and len(err.strip().splitlines()) == 1  # before any settings are printed
    assert main(["train", f"data={tmp_path / 'digts'}", "--print-config"]) == 2
    assert f"(did you mean {folder}?)" in capsys.readouterr().err


def test_a_resumed_runs_printed_settings_are_its_own(tmp_path, capsys):
    folder = digit_folder(tmp_path / "digits", per_class=8)
    runs = tmp_path / "runs"
    settings = [f"data={folder}", "model=resnet8", "epochs=1", "batch_size=8", f"out={runs}", "quiet=true"]
    assert main(["train", *settings]) == 0
    capsys.readouterr()
    (run,) = runs.iterdir()
    assert main(["train", f"resume={run}", "--print-config"]) == 0
    printed = capsys.readouterr().out
    settings = yaml.safe_load(printed)
    assert printed.startswith(f"# output.resume: the settings of the run in {run}")
    assert settings["model"]["name"] == "resnet8" and settings["schedule"]["epochs"] == 1
    assert settings["output"]["out"] == str(runs) and settings["data"]["image_size"] == 28
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1  # printing resumed nothing


def test_a_run_begun_before_folders_declared_flips_goes_on_flipping_when_resumed(tmp_path, capsys):
    """A run whose recorded settings say hflip 'auto' (all runs before this version) flipped its folder; resumed
    after the folder declares `hflip: false`, it goes on as it began, so that resume stays bit-identical."""
    from resnetlab.training.resolve import resolve

    folder = digit_folder(tmp_path / "digits", per_class=8)
    runs = tmp_path / "runs"
    assert (
        main(["train", f"data={folder}", "model=resnet8", "epochs=1", "batch_size=8", f"out={runs}", "quiet=true"]) == 0
    )
    (run,) = runs.iterdir()
    state = torch.load(run / "last.pt", weights_only=True)
    state["config"]["data"]["hflip"] = "auto"  # as an earlier version recorded it
    torch.save(state, run / "last.pt")
    (folder / "resnetlab.yaml").write_text("hflip: false\n")
    resolved = resolve(load_config(None, [f"resume={run}"]))
    assert resolved.cfg.data.hflip == "true" and "goes on as it began" in resolved.why["data.hflip"]
    assert resolve(load_config(None, [f"data={folder}"])).cfg.data.hflip == "false"  # a new run follows the folder


def test_a_fault_met_by_another_process_of_a_job_is_said_by_that_process(monkeypatch, capsys):
    """Under torchrun a changed cache may be met by one process alone (the one that read the row): it says so."""
    import resnetlab.cli as cli
    from resnetlab.data.rowfile import CacheChanged

    def meets_a_changed_cache(args):
        raise CacheChanged("/data/cache/images-1.npy", "it was cut short")

    about, _, arguments = cli.COMMANDS["models"]
    monkeypatch.setitem(cli.COMMANDS, "models", (about, meets_a_changed_cache, arguments))
    monkeypatch.setenv("RANK", "1")
    assert main(["models"]) == 1
    assert capsys.readouterr().err.startswith(
        "resnetlab: error: process 1: the image cache /data/cache/images-1.npy changed while it was read (it was cut "
        "short); nothing read from it after the change was used, and it is rebuilt when the command runs again"
    )


def test_notes_on_keys_inside_a_wrapped_inline_mapping_go_in_the_header():
    """Where YAML wraps an inline mapping depends on its values' lengths (a run's path): a key that starts a
    wrapped line is not a line of its own, so its note is a header line, whatever the path's length."""
    from resnetlab.training import load_config
    from resnetlab.training.resolve import Resolved, annotated_yaml

    path = "/runs/resnet8"
    for length in range(1, 100):  # at some lengths of out= the wrapped line starts with "resume:"
        cfg = load_config(None, [f"output.resume={path}", f"out=/{'o' * length}"])
        text = annotated_yaml(Resolved(cfg, {"output.resume": "the settings of the run"}, None, None))
        assert yaml.safe_load(text)["output"]["resume"] == path
        noted = [line for line in text.splitlines() if "the settings of the run" in line]
        assert noted == ["# output.resume: the settings of the run"], text
