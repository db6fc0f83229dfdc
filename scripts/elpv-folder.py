"""Write the ELPV solar-cell images as an image folder: OUT/train/<class>/ and OUT/test/<class>/.

ELPV (Buerhop-Lutz et al. 2018; Deitsch et al. 2019, "Automatic classification of defective photovoltaic
module cells in electroluminescence images") is 2,624 electroluminescence camera images of solar cells,
300 x 300 grey, each with a defect probability of 0, 1/3, 2/3 or 1 from expert annotators. It ships inside the
`elpv-dataset` wheel on PyPI (CC BY-NC-SA 4.0), so it needs no download beyond pip's:

    pip download --no-deps -d /tmp/elpv elpv-dataset==1.0.0.post1
    python scripts/elpv-folder.py /tmp/elpv/elpv_dataset-1.0.0.post1-py3-none-any.whl data/elpv

Classes follow the paper's two-way task: functional (probability < 0.5) and defective (>= 0.5). The test part is
a stratified 25% of each class (the paper's 75 / 25 split; seed 0), never seen by training or selection.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np

TEST_SHARE, SEED = 0.25, 0


def main(wheel: str, out: str) -> int:
    root = Path(out)
    with zipfile.ZipFile(wheel) as archive:
        rows = [line.split() for line in archive.read("elpv_dataset/data/labels.csv").decode().splitlines() if line]
        classes = np.array(["defective" if float(p) >= 0.5 else "functional" for _, p, _ in rows])
        rng = np.random.default_rng(SEED)
        test = np.zeros(len(rows), bool)
        for name in ("functional", "defective"):
            members = rng.permutation(np.flatnonzero(classes == name))
            test[members[: round(TEST_SHARE * len(members))]] = True
        for (path, _, _), name, is_test in zip(rows, classes, test):
            target = root / ("test" if is_test else "train") / name / Path(path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(f"elpv_dataset/data/{path}"))
    for part in ("train", "test"):
        counts = {c.name: len(list(c.iterdir())) for c in sorted((root / part).iterdir())}
        print(part, counts)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
