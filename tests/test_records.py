"""The records later commands read (a run's split, its weights' metadata): typed, checked once when read,
round-tripped through their stored form unchanged."""

import json

import pytest

from resnetlab.errors import UserError
from resnetlab.records import SplitRecord, WeightsMeta

SPLIT = {
    "method": "stratified hold-out",
    "algorithm": "stratified-v1",
    "val_fraction": 0.1,
    "seed": 0,
    "limit_train": 0,
    "limit_val": 0,
    "train_count": 900,
    "val_count": 100,
    "test_count": 200,
    "train_digest": "ab12",
    "val_digest": "cd34",
}
META = {
    "model": "resnet8",
    "args": {"drop_path_rate": 0.1},
    "num_classes": 2,
    "in_chans": 1,
    "classes": ["cat", "dog"],
    "input_size": [1, 28, 28],
    "resize": 32,
    "mean": [0.5],
    "std": [0.25],
    "dataset": "pets",
    "data": "/data/pets",
    "data_path": "",
    "image_size": 28,
    "channels": 1,
    "split": SPLIT,
    "epoch": 3,  # what a weights file adds beside the record: kept as it came
    "selected_on": "val",
}


def test_the_stored_form_round_trips_through_json_unchanged():
    meta = WeightsMeta.read(json.loads(json.dumps(META)), "w.safetensors")
    assert (
        meta.classes == ("cat", "dog")
        and meta.split.val_count == 100
        and meta.extra == {"epoch": 3, "selected_on": "val"}
    )
    assert meta.to_dict() == META
    assert WeightsMeta.read(meta.to_dict(), "again") == meta
    assert meta.tagged(epoch=4).extra["epoch"] == 4 and meta.extra["epoch"] == 3  # a copy; the record stays


def test_foreign_weights_carry_no_record_and_old_ones_fill_the_defaults():
    assert WeightsMeta.read({}, "x.pth") is None and WeightsMeta.read({"format": "timm"}, "x.pth") is None
    old = {k: v for k, v in META.items() if k not in ("split", "resize", "data", "data_path", "image_size", "channels")}
    meta = WeightsMeta.read(old, "old.safetensors")
    assert meta.split is None and meta.resize == 0 and meta.resized_side == 28 and meta.data_name == "pets"
    with pytest.raises(UserError, match="x.pth has malformed resnetlab metadata \\(model missing or wrong\\)"):
        WeightsMeta.read({k: v for k, v in META.items() if k != "model"}, "x.pth")  # resnetlab's, but no model


@pytest.mark.parametrize(
    "change, named",
    [
        ({"num_classes": "2"}, "num_classes missing or wrong"),
        ({"classes": ["cat", 7]}, "classes missing or wrong"),
        ({"mean": None, "std": "x"}, "mean, std missing or wrong"),
        ({"in_chans": True}, "in_chans missing or wrong"),  # a JSON true is not a channel count
        ({"classes": ["cat"]}, "classes (1 names for 2 classes)"),
        ({"input_size": [3, 28, 28]}, "input_size ([3, 28, 28] for 1 channels)"),
        ({"split": [1]}, "malformed split record (a list)"),
        ({"split": {**SPLIT, "seed": 0.5}}, "malformed split record (seed missing or wrong)"),
    ],
)
def test_a_malformed_field_is_one_sentence_naming_the_file_and_the_field(change, named):
    with pytest.raises(UserError) as err:
        WeightsMeta.read({**META, **change}, "w.safetensors")
    message = str(err.value)
    assert message.startswith("w.safetensors has ") and "malformed" in message and named in message
    assert message.count(". ") == 0 and "resnetlab export RUN" in message  # one sentence, saying what to do


def test_what_to_do_about_a_malformed_record_depends_on_the_file_it_came_from():
    resume_fix = "resume from another run, or start afresh"  # a checkpoint cannot be exported again
    with pytest.raises(UserError, match=f"last.pt has malformed resnetlab metadata .*; {resume_fix}$"):
        WeightsMeta.read({**META, "num_classes": 0}, "last.pt", resume_fix)
    with pytest.raises(UserError, match=f"a malformed split record .*; {resume_fix}$"):
        WeightsMeta.read({**META, "split": {"method": 1}}, "last.pt", resume_fix)
    with pytest.raises(AssertionError):
        WeightsMeta.read(META, "w").tagged(resize=3)  # a named field is never shadowed by an extra key


def test_a_split_record_names_what_changed_since_a_run_began():
    then = SplitRecord.read(SPLIT, "last.pt")
    now = SplitRecord.read({**SPLIT, "seed": 1, "val_digest": "ee"}, "now")
    assert then.differences(now) == ["seed 0 then, 1 now", "val_digest cd34 then, ee now"]
    assert then.differences(then) == [] and then.count("test") == 200 and then.digest("test") is None
    assert then.describe() == "validation: 100 images held out of train (stratified, 0.1, split seed 0)"
