"""MNIST digits for the batch-endpoint example: load them, write them as a folder of PNGs.

The digits are the real MNIST test set that the repository carries in ``examples/mnist/data/``
(checked against its ``SHA256SUMS`` when read); ``$MNIST_DIR`` or ``--mnist-dir`` chooses
another folder of IDX files. A torchvision download (``--source download``) or scikit-learn's
bundled 8x8 digits (``--source sklearn``) are used only when asked for.

Importable as a plain module (put ``examples/mnist`` on ``sys.path``; ``import data``) and
runnable::

    python examples/mnist/data.py --out examples/mnist/.work/sample --count 100

writes ``00000.png`` … ``00099.png`` into ``--out`` and a labels CSV *next to* that folder
(``examples/mnist/.work/sample_labels.csv``), never inside it: a batch job scores every file
directly inside its input folder, so the folder must hold only the images.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import hashlib
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

IMAGE_MAGIC = 2051  # idx3-ubyte: 0x00000803
LABEL_MAGIC = 2049  # idx1-ubyte: 0x00000801

# file-name stems of the two MNIST subsets, as published (and as torchvision stores them)
SUBSETS = {
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
}

#: The MNIST test set that ships with the repository (see its README for source and licence).
BUNDLED_DIR = Path(__file__).resolve().parent / "data"
#: Where the digits come from: a folder of IDX files, a torchvision download, scikit-learn.
SOURCES = ("folder", "download", "sklearn")
#: train.py trains on the first 8,000 images; the rest are held out (and scored by run.sh)
DEFAULT_TRAIN_COUNT = 8000

# where torchvision downloads MNIST from; used only for the quick "are we online" check
_TORCHVISION_HOST = ("ossci-datasets.s3.amazonaws.com", 443)
_NETWORK_TIMEOUT = 3.0


class MnistFormatError(ValueError):
    """An IDX file that is not what its name says (wrong magic number, truncated, …)."""


# --------------------------------------------------------------------------- IDX reading


def _find_idx(folder: Path, stem: str) -> Path | None:
    """``stem.gz`` or uncompressed ``stem`` in ``folder`` or in torchvision's ``MNIST/raw``."""
    for base in (folder, folder / "MNIST" / "raw", folder / "raw"):
        for name in (f"{stem}.gz", stem):
            candidate = base / name
            if candidate.is_file():
                return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError) as exc:  # bad gzip stream, unreadable file
        raise MnistFormatError(f"{path}: cannot read IDX data ({exc})") from exc


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Read an ``idx3-ubyte`` image file (optionally gzipped) as uint8 ``[N, rows, cols]``."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 16:
        raise MnistFormatError(f"{path}: too short for an IDX image header ({len(raw)} bytes)")
    magic, count, rows, cols = np.frombuffer(raw[:16], dtype=">u4")
    if magic != IMAGE_MAGIC:
        raise MnistFormatError(
            f"{path}: magic number {int(magic)}, expected {IMAGE_MAGIC} for an IDX image file"
        )
    expected = 16 + int(count) * int(rows) * int(cols)
    if len(raw) != expected:
        raise MnistFormatError(
            f"{path}: header says {int(count)} images of {int(rows)}x{int(cols)} "
            f"({expected} bytes) but the file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(int(count), int(rows), int(cols))


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """Read an ``idx1-ubyte`` label file (optionally gzipped) as uint8 ``[N]``."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 8:
        raise MnistFormatError(f"{path}: too short for an IDX label header ({len(raw)} bytes)")
    magic, count = np.frombuffer(raw[:8], dtype=">u4")
    if magic != LABEL_MAGIC:
        raise MnistFormatError(
            f"{path}: magic number {int(magic)}, expected {LABEL_MAGIC} for an IDX label file"
        )
    if len(raw) != 8 + int(count):
        raise MnistFormatError(
            f"{path}: header says {int(count)} labels but the file has {len(raw) - 8}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=8).copy()


def default_folder() -> Path:
    """``$MNIST_DIR`` when set, else the test set bundled in ``examples/mnist/data/``."""
    chosen = os.environ.get("MNIST_DIR")
    return Path(chosen).expanduser() if chosen else BUNDLED_DIR


def verify_checksums(folder: Path) -> None:
    """Check the files that ``folder/SHA256SUMS`` lists (those present); no list, no check."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        return
    for line in sums.read_text().splitlines():
        expected, _, name = line.strip().partition("  ")
        path = folder / name.lstrip("*")
        if not expected or not path.is_file():
            continue
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != expected:
            raise MnistFormatError(
                f"{path}: SHA-256 {actual} does not match {expected} in {sums} "
                "(a damaged or replaced file; restore it with `git checkout -- {path}`)"
            )


def default_train_count(total: int) -> int:
    """Images train.py trains on by default: 8,000 of MNIST's 10,000, else the first 80 %."""
    return DEFAULT_TRAIN_COUNT if total > DEFAULT_TRAIN_COUNT * 1.2 else int(total * 0.8)


def _load_subset(folder: Path, subset: str) -> tuple[np.ndarray, np.ndarray, str]:
    image_stem, label_stem = SUBSETS[subset]
    image_path, label_path = _find_idx(folder, image_stem), _find_idx(folder, label_stem)
    missing = [s for s, p in ((image_stem, image_path), (label_stem, label_path)) if p is None]
    if missing:
        raise FileNotFoundError(
            f"{folder}: no MNIST {subset} files {', '.join(m + '[.gz]' for m in missing)}"
        )
    verify_checksums(image_path.parent)
    images, labels = read_idx_images(image_path), read_idx_labels(label_path)
    if len(images) != len(labels):
        raise MnistFormatError(
            f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels"
        )
    return images, labels, f"MNIST {subset} set ({len(images)} images) from {image_path.parent}"


# --------------------------------------------------------------------------- loading


def load_mnist(
    source: str | os.PathLike | None = None, *, subset: str = "auto"
) -> tuple[np.ndarray, np.ndarray, str]:
    """Return ``(images uint8 [N,28,28], labels uint8 [N], description)`` from a folder.

    ``source`` is a folder with the IDX files (``t10k-images-idx3-ubyte.gz``,
    ``t10k-labels-idx1-ubyte.gz``, and optionally ``train-images-idx3-ubyte.gz`` /
    ``train-labels-idx1-ubyte.gz``; uncompressed files and torchvision's ``MNIST/raw`` layout
    are accepted too); ``None`` means :func:`default_folder`. A ``SHA256SUMS`` file in the
    folder is checked. ``subset``: ``"test"``, ``"train"``, ``"all"`` (train then test) or
    ``"auto"`` — the test set when it is there, else the train set.
    """
    if subset not in ("auto", "test", "train", "all"):
        raise ValueError(f"subset must be auto, test, train or all, not {subset!r}")
    folder = default_folder() if source is None else Path(source).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder {folder} does not exist")
    if subset == "auto":
        subset = "test" if _find_idx(folder, SUBSETS["test"][0]) else "train"
    if subset != "all":
        return _load_subset(folder, subset)
    parts = [_load_subset(folder, s) for s in ("train", "test")]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        " + ".join(p[2] for p in parts),
    )


def load_digits(
    source: str = "folder", folder: str | os.PathLike | None = None, *, subset: str = "auto"
) -> tuple[np.ndarray, np.ndarray, str]:
    """The digits from one of :data:`SOURCES`: ``folder`` (default), ``download``, ``sklearn``."""
    if source == "folder":
        return load_mnist(folder, subset=subset)
    if source == "download":
        return download_mnist(subset)
    if source == "sklearn":
        return load_sklearn_digits()
    raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")


def _network_reachable(host_port: tuple[str, int] = _TORCHVISION_HOST) -> bool:
    try:
        with socket.create_connection(host_port, timeout=_NETWORK_TIMEOUT):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _default_socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def download_mnist(subset: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """MNIST through ``torchvision.datasets.MNIST`` into ``$PBE_MNIST_CACHE`` (or
    ``~/.cache/pbe-mnist``): the train set for ``subset="train"``, else the test set."""
    cache = Path(os.environ.get("PBE_MNIST_CACHE", Path.home() / ".cache" / "pbe-mnist"))
    hint = "use the bundled test set (the default) or --source sklearn"
    if not _network_reachable():
        raise ConnectionError(f"cannot download MNIST: {_TORCHVISION_HOST[0]} unreachable; {hint}")
    import torchvision

    train = subset == "train"
    try:
        with _default_socket_timeout(30):
            dataset = torchvision.datasets.MNIST(root=str(cache), train=train, download=True)
    except Exception as exc:  # offline, proxy, bad download: one line that says what to do
        raise ConnectionError(
            f"cannot download MNIST into {cache}: {type(exc).__name__}: {exc}; {hint}"
        ) from exc
    images = dataset.data.numpy().astype(np.uint8)
    labels = dataset.targets.numpy().astype(np.uint8)
    name = "train" if train else "test"
    return images, labels, f"MNIST {name} set ({len(images)} images) via torchvision in {cache}"


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """scikit-learn's bundled 1,797 digits (8x8, values 0-16) in MNIST's format.

    Each digit is rescaled to 0-255, resized with Pillow to 20x20 and centred on a 28x28 black
    canvas (MNIST digits sit in a 20x20 box inside 28x28), giving uint8 ``[1797, 28, 28]``.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    images = np.zeros((len(small), 28, 28), dtype=np.uint8)
    for i, img in enumerate(small):
        resized = Image.fromarray(img).resize((20, 20), Image.Resampling.BILINEAR)
        images[i, 4:24, 4:24] = np.asarray(resized, dtype=np.uint8)
    labels = digits.target.astype(np.uint8)
    description = (
        f"scikit-learn load_digits fallback ({len(images)} 8x8 digits resized to 28x28, "
        "not real MNIST)"
    )
    return images, labels, description


# --------------------------------------------------------------------------- writing


def write_pngs(
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    folder: str | os.PathLike,
    *,
    start: int = 0,
    count: int | None = None,
) -> list[Path]:
    """Write ``images[start:start+count]`` as 8-bit grayscale PNGs named ``{index:05d}.png``.

    ``index`` is the position in ``images`` (so ``start=42`` begins with ``00042.png``). Only
    images go into ``folder``; pair the returned paths with ``labels`` and write them elsewhere
    with :func:`write_labels_csv` (see :func:`labels_by_file`).
    """
    from PIL import Image

    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be [N, rows, cols], got shape {images.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not 0 <= start <= len(images):
        raise ValueError(f"start {start} outside 0..{len(images)}")
    stop = len(images) if count is None else start + count
    if count is not None and (count < 0 or stop > len(images)):
        raise ValueError(f"cannot write {count} images from index {start}: only {len(images)}")

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(start, stop):
        pixels = np.ascontiguousarray(images[index], dtype=np.uint8)
        path = folder / f"{index:05d}.png"
        Image.fromarray(pixels).save(path, format="PNG")
        paths.append(path)
    return paths


def labels_by_file(paths: Sequence[Path], labels: Sequence[int] | np.ndarray) -> dict[str, int]:
    """``{"00042.png": 7, …}`` for paths written by :func:`write_pngs` (index from the name)."""
    return {Path(p).name: int(labels[int(Path(p).stem)]) for p in paths}


def write_labels_csv(labels_by_file: Mapping[str, int], path: str | os.PathLike) -> Path:
    """Write ``file,label`` rows (with that header), sorted by file name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label"])
        for name in sorted(labels_by_file):
            writer.writerow([name, int(labels_by_file[name])])
    return path


def default_labels_csv(folder: str | os.PathLike) -> Path:
    """``<parent>/<folder name>_labels.csv``: next to the image folder, not inside it."""
    folder = Path(folder)
    return folder.parent / f"{folder.name}_labels.csv"


# --------------------------------------------------------------------------- CLI


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """``--mnist-dir`` and ``--source``, shared by data.py and train.py."""
    parser.add_argument(
        "--mnist-dir",
        help="folder with the MNIST IDX .gz files (default: $MNIST_DIR, else the test set "
        f"bundled in {BUNDLED_DIR.relative_to(BUNDLED_DIR.parents[2])})",
    )
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="folder",
        help="folder: IDX files (default); download: MNIST via torchvision (online only); "
        "sklearn: scikit-learn's 1,797 8x8 digits resized to 28x28 (not real MNIST)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write MNIST digits as a folder of PNGs (the input of a batch job) and "
        "their labels as a CSV next to that folder."
    )
    add_source_arguments(parser)
    parser.add_argument("--out", required=True, help="folder to write the PNGs into")
    parser.add_argument("--count", type=int, required=True, help="number of PNGs to write")
    parser.add_argument(
        "--start",
        default="0",
        help="index of the first image, or 'heldout': the first one train.py does not train on",
    )
    parser.add_argument(
        "--subset",
        default="auto",
        choices=["auto", "test", "train", "all"],
        help="which MNIST files to read (default: the test set when present)",
    )
    parser.add_argument(
        "--labels-csv", help="where to write the labels (default: <out>_labels.csv next to it)"
    )
    args = parser.parse_args(argv)

    images, labels, description = load_digits(args.source, args.mnist_dir, subset=args.subset)
    if args.start == "heldout":
        start = default_train_count(len(images))
    elif args.start.isdigit():
        start = int(args.start)
    else:
        parser.error(f"--start must be an image index or 'heldout', not {args.start!r}")
    out = Path(args.out)
    labels_csv = Path(args.labels_csv) if args.labels_csv else default_labels_csv(out)
    if labels_csv.resolve().parent == out.resolve():
        parser.error("--labels-csv must not be inside --out: the batch job scores every file there")
    try:
        paths = write_pngs(images, labels, out, start=start, count=args.count)
    except ValueError as exc:
        parser.error(str(exc))
    write_labels_csv(labels_by_file(paths, labels), labels_csv)
    print(f"data: {description}")
    print(f"wrote {len(paths)} PNGs to {out} and labels to {labels_csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
