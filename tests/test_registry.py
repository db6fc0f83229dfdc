"""The named datasets: one file each (the built-in ones, and those $RESNETLAB_DATASETS names), found by name or
alias; a name taken twice, or a declaration file that declares nothing, is one sentence naming the file."""

import importlib
import os
import pkgutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import resnetlab
from resnetlab.data import dataset_info, load_dataset, registry
from resnetlab.data.cifar import CifarArchive
from resnetlab.data.generated import Generated, synthetic
from resnetlab.data.registry import NamedDataset, canonical, named, names, register
from resnetlab.errors import UserError
from test_data import write_idx_set

TEST_DATASETS = Path(__file__).parent / "datasets"  # tiny_idx.py: a declaration as a user writes one


@pytest.fixture(autouse=True)
def _fresh_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "datadir"))
    monkeypatch.delenv(registry.ENV, raising=False)
    registry.reset()
    yield
    registry.reset()


def declare(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return path


def test_a_dataset_declared_in_a_file_loads_by_name_and_alias(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.ENV, str(TEST_DATASETS))
    images, labels = write_idx_set(tmp_path / "datadir" / "tiny-idx")
    train = load_dataset("tiny-idx", "train", val_fraction=0.0)
    assert train.images.shape == (6, 5, 4, 1) and (train.images[..., 0] == images).all()
    assert train.classes == ["zero", "one", "two"] and (train.labels == labels).all()
    assert train.source == str(tmp_path / "datadir" / "tiny-idx")
    assert len(load_dataset("TINY", "test")) == 4 and canonical("Tiny") == "tiny-idx"
    assert dataset_info("tiny").input_size == (1, 5, 4) and "tiny-idx" in names()
    (tmp_path / "datadir" / "tiny-idx" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="tiny-idx test files not found.*tried"):
        load_dataset("tiny-idx", "test")


def test_the_cli_shows_a_declared_dataset(tmp_path):
    write_idx_set(tmp_path / "datadir" / "tiny-idx")
    env = {**os.environ, registry.ENV: str(TEST_DATASETS / "tiny_idx.py"), "RESNETLAB_DATA": str(tmp_path / "datadir")}
    env["PYTHONPATH"] = str(Path(resnetlab.__file__).parents[1])
    run = [sys.executable, "-m", "resnetlab", "data", "info", "tiny", "--split", "test"]
    proc = subprocess.run(run, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "dataset: tiny-idx (test split)" in proc.stdout and "images: 4 of 5x4x1" in proc.stdout
    assert "zero" in proc.stdout and "two" in proc.stdout
    fetch = subprocess.run(run[:4] + ["fetch", "tiny"], capture_output=True, text=True, env=env, check=False)
    assert fetch.returncode == 2 and "cannot fetch 'tiny'; named datasets that can be fetched: cifar10" in fetch.stderr


def test_a_name_or_alias_taken_is_refused_in_one_sentence(tmp_path, monkeypatch):
    text = (TEST_DATASETS / "tiny_idx.py").read_text().replace('aliases=("tiny",)', 'aliases=("tiny", "FMNIST")')
    path = declare(tmp_path, "clash", text)
    monkeypatch.setenv(registry.ENV, str(path))
    with pytest.raises(UserError) as err:
        named("mnist")
    message = str(err.value)
    assert "'fmnist'" in message and str(path) in message and "fashion-mnist" in message and "\n" not in message
    monkeypatch.delenv(registry.ENV)
    with pytest.raises(UserError, match="'synthetic' .*register\\(\\).*another name"):
        register(replace(named("synthetic"), files=Generated(lambda split: synthetic(split, n=8))))


def test_a_dataset_registered_in_process_loads_by_name_and_cannot_be_fetched():
    register(replace(named("synthetic"), name="few", files=Generated(lambda split: synthetic(split, n=12))))
    assert len(load_dataset("FEW", "test")) == 12 and named("few").info.classes[0] == "class0"
    with pytest.raises(UserError, match="few is generated.*nothing to fetch"):
        named("few").files.fetch(named("few"), Path("unused"))


@pytest.mark.parametrize(
    "text, says",
    [
        ("import nowhere_to_be_found\n", "failed to import \\(ModuleNotFoundError"),
        ("x = (\n", "failed to import \\(SyntaxError"),
        ("DATASET = 'mnist'\n", "declares no NamedDataset"),
        ("# nothing yet\n", "declares no NamedDataset"),
    ],
)
def test_a_broken_declaration_file_is_one_sentence_naming_the_file(tmp_path, monkeypatch, text, says):
    path = declare(tmp_path, "broken", text)
    monkeypatch.setenv(registry.ENV, str(tmp_path))  # a folder: every .py file in it
    with pytest.raises(UserError, match=says) as err:
        load_dataset("mnist", "train")
    message = str(err.value)
    assert str(path) in message and "DATASET = NamedDataset(...)" in message and "\n" not in message


def test_a_missing_declaration_path_and_a_list_of_declarations(tmp_path, monkeypatch):
    monkeypatch.setenv(registry.ENV, str(tmp_path / "absent.py"))
    with pytest.raises(UserError, match="absent.py, which does not exist"):
        named("mnist")
    text = (TEST_DATASETS / "tiny_idx.py").read_text()
    text += "from dataclasses import replace\nDATASETS = [replace(DATASET, name='tiny-two', aliases=())]\n"
    monkeypatch.setenv(registry.ENV, str(declare(tmp_path, "two", text)))
    assert named("tiny-two").name == "tiny-two" and named("tiny").name == "tiny-idx"


# Each built-in dataset's figures as sources.py's INFOS held them before the registry (the test data).
BEFORE = {
    "mnist": ((0.1307,), (0.3081,), (1, 28, 28), tuple("0123456789"), False),
    "fashion-mnist": (
        (0.2860,),
        (0.3530,),
        (1, 28, 28),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        True,
    ),
    "kmnist": ((0.1918,), (0.3483,), (1, 28, 28), ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), False),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), (3, 32, 32), (), True),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), (3, 32, 32), (), True),
    "synthetic": ((0.5,) * 3, (0.25,) * 3, (3, 32, 32), tuple(f"class{i}" for i in range(10)), True),
}
ALIASES = {"fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100"}


def test_every_builtin_dataset_file_declares_what_a_named_dataset_is():
    from resnetlab.data import datasets

    found = pkgutil.iter_modules(datasets.__path__)
    modules = [importlib.import_module(f"{datasets.__name__}.{m.name}") for m in found]
    declared = {module.DATASET.name: module for module in modules}
    assert sorted(declared) == sorted(BEFORE) == sorted(names())
    for name, module in declared.items():
        dataset = module.DATASET
        assert isinstance(dataset, NamedDataset) and module.__doc__ and dataset.about
        assert dataset.classes or isinstance(dataset.files, CifarArchive)  # CIFAR's classes are in its meta file
        assert callable(dataset.files.read) and callable(dataset.files.fetch) and named(name) is dataset
        info = dataset.info
        assert (info.name, info.mean, info.std, info.input_size, info.classes, info.hflip) == (name, *BEFORE[name])
    assert {alias: named(alias).name for alias in ALIASES} == ALIASES
    fetchable = [n for n in names() if named(n).files.fetchable]
    assert fetchable == ["cifar10", "cifar100", "fashion-mnist", "kmnist", "mnist"]


def test_the_readme_shows_the_test_declaration_as_it_is():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    declaration = (TEST_DATASETS / "tiny_idx.py").read_text().split('"""', 2)[2].strip()
    assert f"```python\n{declaration}\n```" in readme
