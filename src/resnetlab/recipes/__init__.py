"""Named training recipes: YAML files shipped inside the package, addressable from anywhere.

    resnetlab train fashion_mnist_fast epochs=3        # a name, with overrides
    resnetlab train path/to/my_recipe.yaml             # or any YAML file
    resnetlab recipes                                  # each with its command and the result it reached

Every recipe starts with comment lines: what it is, `# Command: ...`, `# Result: ...` (with the split, the
seed and the machine), then the settings. `recipe_path` resolves a name or a path; `list_recipes` reads the
headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import ConfigError, did_you_mean

SUFFIX = ".yaml"


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    title: str  # the first comment line
    command: str
    result: str  # the Result: paragraph, joined into one line


def recipe_dir() -> Path:
    return Path(str(resources.files(__name__)))


def names() -> list[str]:
    return sorted(p.stem for p in recipe_dir().glob(f"*{SUFFIX}"))


def recipe_path(name_or_path: str | Path) -> Path:
    """A YAML file that exists, or the shipped recipe of that name (with or without .yaml; configs/NAME.yaml,
    where recipes lived in the repository before, also finds it)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = recipe_dir() / (path.name if path.suffix == SUFFIX else path.name + SUFFIX)
    if shipped.is_file() and (path.parent == Path(".") or path.parent.name == "configs"):
        return shipped  # configs/NAME.yaml: where recipes lived before they moved into the package
    raise ConfigError(
        f"recipe {str(name_or_path)!r} is neither a file nor a shipped recipe{did_you_mean(path.stem, names())}; "
        f"shipped: {', '.join(names())} (`resnetlab recipes` shows each)"
    )


def read_header(path: Path) -> Recipe:
    """The recipe's leading comment block, split into its title, Command: line and Result: paragraph."""
    title, command, result, current = "", "", [], None
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if line.startswith("#   ") and current is not None:  # a continuation of the paragraph above
            current.append(text)
            continue
        current = None
        if text.startswith("Command:"):
            command = text.split(":", 1)[1].strip()
        elif text.startswith("Result:"):
            result = current = [text.split(":", 1)[1].strip()]
        elif not title:
            title = text
    return Recipe(path.stem, path, title, command, " ".join(result))


def list_recipes() -> list[Recipe]:
    return [read_header(recipe_dir() / f"{name}{SUFFIX}") for name in names()]
