"""Where every figure comes from: stratified, seeded hold-outs disjoint from test, limit_* samples that keep
every class, the layouts of image folders, and the split recorded so that `eval RUN split=val` scores
exactly the images a run held out."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import resnetlab
from resnetlab.cli import main
from resnetlab.data import load_splits
from resnetlab.data.splits import apportion, digest
from resnetlab.errors import UserError
from resnetlab.training import load_config
from resnetlab.training.loop import fit

RUN = ["model=resnet8", "data=synthetic", "epochs=2", "batch_size=64", "quiet=true", "output.tensorboard=false"]


def test_apportion_is_proportional_and_exact():
    assert apportion(np.array([50, 30, 20]), 10).tolist() == [5, 3, 2]
    assert apportion(np.array([5, 5, 1]), 3).sum() == 3
    assert apportion(np.array([3, 0, 3]), 6).tolist() == [3, 0, 3]
    assert apportion(np.array([2, 2]), 2, cap=np.array([1, 1])).tolist() == [1, 1]
    ties = {tuple(apportion(np.array([5] * 10), 5, rng=np.random.default_rng(s))) for s in range(5)}
    assert len(ties) > 1  # equal classes: which ones get the extra item is drawn, not always the first


def test_default_holdout_is_stratified_seeded_and_disjoint_from_test():
    splits = load_splits("synthetic")  # 1000 train images, 10 classes; val_fraction 0.1 by default
    train, val, test = splits.train, splits.val, splits.test
    assert (len(train), len(val), len(test)) == (900, 100, 200)
    assert not set(train.positions()) & set(val.positions())  # the held-out images are not trained on
    assert sorted([*train.positions(), *val.positions()]) == list(range(1000))
    source = np.bincount(load_splits("synthetic", val_fraction=0.0).train.labels, minlength=10)
    held = np.bincount(val.labels, minlength=10)
    assert np.all(np.abs(held - source / 10) <= 1)  # every class keeps its share (within rounding)
    assert test.split == "test" and splits.record.method == "stratified hold-out"
    again = load_splits("synthetic", need=("val",)).val
    assert np.array_equal(again.positions(), val.positions())  # the same settings, the same images
    other = load_splits("synthetic", seed=1).val
    assert not np.array_equal(other.positions(), val.positions())


def test_limits_take_a_stratified_sample_not_the_first_images():
    splits = load_splits("synthetic", limit_train=100, limit_val=30)
    assert (len(splits.train), len(splits.val)) == (100, 30)
    whole = np.bincount(load_splits("synthetic").train.labels, minlength=10)
    assert np.all(np.abs(np.bincount(splits.train.labels, minlength=10) - whole / 9) <= 1)
    assert splits.train.positions().max() > 500  # drawn from the whole split, not its head


def save(path: Path, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), colour).save(path)


def make_split_folder(root: Path, parts=("train", "val", "test"), per_class=4) -> Path:
    for part in parts:
        for c, colour in (("cat", (200, 20, 20)), ("dog", (20, 20, 200))):
            for i in range(per_class):
                save(root / part / c / f"{part}{i}.png", colour)
    return root


def test_folder_layouts(tmp_path):
    full = load_splits(str(make_split_folder(tmp_path / "a")), image_size=8)
    assert full.record.method == "folder" and len(full.val) == 8 and len(full.test) == 8
    assert full.train.info.name == "a"  # shown by the folder's own name, not "train"
    no_val = load_splits(str(make_split_folder(tmp_path / "b", ("train", "test"), 10)), image_size=8)
    assert no_val.record.method == "stratified hold-out" and len(no_val.val) == 2 and len(no_val.test) == 20
    assert set(no_val.val.files).isdisjoint(no_val.train.files) and all("train" in f for f in no_val.val.files)
    flat = tmp_path / "c"
    for c in ("x", "y"):
        for i in range(10):
            save(flat / c / f"{i}.png", (i * 20, 0, 0))
    parts = load_splits(str(flat), image_size=8)
    assert parts.test is None and len(parts.val) == 2 and sorted(np.bincount(parts.val.labels)) == [1, 1]
    assert digest(parts.val) == parts.record.val_digest


@pytest.fixture(scope="module")
def held_out_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return fit(load_config(None, RUN + [f"out={out}", "seed=3"]))


def test_a_default_run_selects_on_validation_and_scores_test_once(held_out_run):
    run, summary = held_out_run.run_dir, held_out_run.summary
    assert summary["selected_on"] == "val" and summary["result_split"] == "test"
    assert summary["split"]["val_count"] == 100 and summary["split"]["test_count"] == 200
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "val_top1" in header and "test_top1" not in header  # test never appears per epoch
    tops = [r["val_top1"] for r in held_out_run.rows]
    assert summary["best_val_top1"] == max(tops) and summary["best_epoch"] == 1 + tops.index(max(tops))
    meta = resnetlab.load(run)[1]
    assert meta.extra["epoch"] == summary["best_epoch"] and meta.split.seed == 0
    assert 0.0 <= summary["test_top1"] <= 1.0


def test_eval_split_val_reproduces_the_held_out_images_from_the_run_alone(held_out_run, capsys):
    summary = held_out_run.summary
    val = resnetlab.evaluate(held_out_run.run_dir, split="val", device="cpu")
    assert val["count"] == 100 and val["top1"] == pytest.approx(summary["best_val_top1"], abs=1e-6)
    train = resnetlab.evaluate(held_out_run.run_dir, split="train", device="cpu")
    assert train["count"] == 900
    test = resnetlab.evaluate(held_out_run.run_dir, device="cpu")
    assert test["count"] == 200 and test["top1"] == pytest.approx(summary["test_top1"], abs=1e-6)
    assert main(["eval", str(held_out_run.run_dir), "split=val"]) == 0
    assert "(val, 100 images, the run's own split)" in capsys.readouterr().out


def test_the_split_does_not_follow_the_training_seed(tmp_path, held_out_run):
    other = fit(load_config(None, RUN + [f"out={tmp_path}", "seed=11", "epochs=1"]))
    assert other.summary["split"]["val_digest"] == held_out_run.summary["split"]["val_digest"]


def test_training_on_everything_selects_nothing_and_labels_test_as_display_only(tmp_path):
    result = fit(load_config(None, RUN + [f"out={tmp_path}", "val_fraction=0"]))
    summary, run = result.summary, result.run_dir
    assert summary["selected_on"] is None and summary["best_epoch"] == 2 and summary["best_val_top1"] is None
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "test_top1" in header and "val_top1" not in header
    assert summary["split"]["train_count"] == 1000
    assert resnetlab.load(run)[1].extra["epoch"] == 2  # best = last


def test_a_folder_changed_since_the_run_is_not_scored_as_if_it_were_the_same(tmp_path, capsys):
    root = make_split_folder(tmp_path / "pets", ("train",), per_class=10)
    settings = [f"out={tmp_path / 'runs'}", f"data={root}", "data.image_size=8", "epochs=1", "batch_size=8"]
    run = fit(load_config(None, RUN + settings))
    assert run.summary["dataset"] == "pets" and run.summary["result_split"] == "val"
    assert json.loads((run.run_dir / "summary.json").read_text())["data"] == str(root)
    assert resnetlab.evaluate(run.run_dir, split="val")["count"] == 2
    for f in (root / "train" / "cat").iterdir():
        if f.name.startswith("train"):
            f.rename(f.with_name("renamed-" + f.name))
    with pytest.raises(UserError, match="has changed since"):
        resnetlab.evaluate(run.run_dir, split="val")
    assert main(["eval", str(run.run_dir), "split=val"]) == 2
    assert "changed since" in capsys.readouterr().err


def test_weights_written_before_the_split_was_recorded_still_evaluate_and_say_so(held_out_run, tmp_path):
    from resnetlab.files import read_weights, save_weights

    state, meta = read_weights(held_out_run.run_dir / "best.safetensors")
    old = {k: v for k, v in meta.items() if k not in ("split", "data", "data_path", "image_size", "channels")}
    save_weights(tmp_path / "old.safetensors", state, old)
    result = resnetlab.evaluate(tmp_path / "old.safetensors", device="cpu")
    assert result["count"] == 200 and "chose its best epoch on the test split" in result["notes"][0]
    with pytest.raises(UserError, match="no validation split of its own"):
        resnetlab.evaluate(tmp_path / "old.safetensors", split="val")


def test_one_rule_says_which_split_a_figure_is_on():
    from resnetlab.data.splits import Splits, watched_in

    part = object()  # any part: the rule looks only at which parts exist
    cases = {(True, True): ("val", "test"), (False, True): ("test", "test"), (True, False): ("val", "val")}
    for (has_val, has_test), expected in cases.items():
        splits = Splits(part, part if has_val else None, part if has_test else None)  # type: ignore[arg-type]
        assert (splits.watched(), splits.final()) == expected
    assert Splits(part, None, None).watched() is None and Splits(part, None, None).final() is None  # type: ignore
    assert watched_in({"val_top1": 0.9, "test_top1": 0.8}) == "val"
    assert watched_in({"val_top1": float("nan"), "test_top1": 0.8}) == "test"  # an arm without validation
    assert watched_in({"val_top1": None}) is None and watched_in({"train_acc": 0.5}) is None
