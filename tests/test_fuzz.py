"""Fuzzing the parsers of untrusted input with Hypothesis: every config, IDX file, CIFAR batch and image ends
in success or a resnetlab error with a message, never another exception (and never a hang)."""

import io
import os
import pickle
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from resnetlab.data.cifar import _read_cifar
from resnetlab.data.folders import read_image
from resnetlab.data.idx import read_idx
from resnetlab.data.registry import named
from resnetlab.errors import UserError
from resnetlab.training.config import all_keys
from resnetlab.training.settings import SHORT_KEYS, load_config

# The same 300 examples on every run, so that CI is repeatable; FUZZ_RANDOM=1 draws new ones to look for more
# (a recipe of just `?`, a YAML null key, was found that way).
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=os.environ.get("FUZZ_RANDOM") != "1")  # fmt: skip


def user_error_or_success(call) -> None:
    try:
        call()
    except UserError as err:
        assert str(err).strip(), "a resnetlab error always says what is wrong"


# ---------------------------------------------------------------------------------------------------
# The configuration: key=value overrides and recipe files

KEYS = st.sampled_from(all_keys() + sorted(SHORT_KEYS)) | st.text(string.ascii_lowercase + "._", max_size=12)
VALUES = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "-inf", "1e999", "true", "no", "null", "[]", "[1, 2]", "{a: 1}", "[", "cpu", "A"]),
    st.text(max_size=20),
)


@FUZZ
@given(st.lists(st.tuples(KEYS, VALUES), max_size=6))
def test_any_overrides_parse_or_fail_with_a_config_error(pairs):
    user_error_or_success(lambda: load_config(None, [f"{k}={v}" for k, v in pairs]))


@FUZZ
@given(st.text(max_size=20) | st.lists(st.text(max_size=8), max_size=3).map(" ".join))
def test_overrides_that_are_not_key_value_fail_with_a_config_error(item):
    user_error_or_success(lambda: load_config(None, [item]))


YAML_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
YAML_TREES = st.recursive(
    YAML_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8) | KEYS, inner, max_size=4),
    max_leaves=12,
)
SECTIONS = st.dictionaries(
    st.sampled_from(["model", "data", "optim", "schedule", "run", "output", "finetune"]) | st.text(max_size=6),
    YAML_TREES,
    max_size=4,
)


@FUZZ
@given(SECTIONS | YAML_TREES.map(lambda t: {"any": t}) | st.text(max_size=60))
@example("?").via("found by FUZZ_RANDOM: a null key")
@example("? [1, 2]\n: 3\n").via("a key that is a list")
@example("data:\n  ? \n").via("a null key inside a section")
def test_any_recipe_file_loads_or_fails_with_a_config_error(content):
    with tempfile.TemporaryDirectory() as folder:
        recipe = Path(folder) / "recipe.yaml"
        recipe.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        user_error_or_success(lambda: load_config(recipe, []))


# ---------------------------------------------------------------------------------------------------
# IDX files (the MNIST family)


def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def mutated(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    raw = bytearray(data)
    for position, value in edits:
        if raw:
            raw[position % len(raw)] = value
    return bytes(raw[:cut] if cut is not None else raw)


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6)
CUTS = st.none() | st.integers(0, 400)
GOOD_IDX = idx_bytes(np.arange(2 * 5 * 5, dtype=np.uint8).reshape(2, 5, 5))


@FUZZ
@given(EDITS, CUTS, st.booleans())
def test_any_idx_file_reads_or_fails_with_a_user_error(edits, cut, gzipped):
    import gzip

    data = mutated(GOOD_IDX, edits, cut)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x-idx3-ubyte"
        path.write_bytes(gzip.compress(data) if gzipped else data)
        user_error_or_success(lambda: read_idx(path))


@FUZZ
@given(st.binary(max_size=64))
def test_random_bytes_as_an_idx_file_fail_with_a_user_error(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x-idx1-ubyte"
        path.write_bytes(data)
        user_error_or_success(lambda: read_idx(path))


# ---------------------------------------------------------------------------------------------------
# CIFAR batches (pickles, read by a restricted unpickler)

CIFAR10 = named("cifar10")
SPEC = CIFAR10.files
BATCH_VALUES = st.one_of(
    st.none(),
    st.integers(-5, 300),
    st.binary(max_size=8),
    st.lists(st.integers(-5, 300), max_size=6),
    st.builds(lambda n, w: np.zeros((n, w), np.uint8), st.integers(0, 3), st.sampled_from([0, 5, 3072])),
)
BATCHES = st.one_of(
    st.dictionaries(st.sampled_from([b"data", b"labels", b"fine_labels", "data", b"x"]), BATCH_VALUES, max_size=3),
    BATCH_VALUES,
    st.lists(BATCH_VALUES, max_size=2),
)


@FUZZ
@given(BATCHES, BATCHES, EDITS, CUTS)
def test_any_cifar_batch_reads_or_fails_with_a_user_error(batch, meta, edits, cut):
    def member(name: str) -> bytes:
        content = {b"label_names": [b"a"] * 10} if name == SPEC.meta_file and meta is None else batch
        raw = pickle.dumps(content, protocol=2)
        return mutated(raw, edits, cut) if name == SPEC.test_files[0] else raw

    user_error_or_success(lambda: _read_cifar(CIFAR10, "test", member, "fuzzed"))


def test_a_cifar_batch_that_would_run_code_is_refused():
    hostile = pickle.dumps(Path("/"), protocol=2)  # names a class to construct: refused, not loaded
    with pytest.raises(UserError, match="refusing to load pathlib"):
        _read_cifar(CIFAR10, "test", lambda name: hostile, "hostile")


# ---------------------------------------------------------------------------------------------------
# Image files in every format the folder reader accepts


def encoded(fmt: str, mode: str) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


IMAGES = [
    encoded(fmt, mode)
    for fmt, mode in [("PNG", "RGB"), ("PNG", "P"), ("PNG", "I;16"), ("JPEG", "RGB"), ("JPEG", "CMYK"),
                      ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"), ("WEBP", "RGB"), ("PPM", "RGB")]
]  # fmt: skip


@FUZZ
@given(st.sampled_from(range(len(IMAGES))), EDITS, CUTS, st.sampled_from([1, 3]))
def test_any_image_file_decodes_or_is_skipped_with_a_reason(which, edits, cut, channels):
    data = mutated(IMAGES[which], edits, cut)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.img"
        path.write_bytes(data)
        result = read_image(path, 8, channels)
    assert isinstance(result, str) and result or (result.shape == (8, 8, channels) and result.dtype == np.uint8)
