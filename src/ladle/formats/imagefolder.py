"""A lazy dataset of image files sorted into one folder per class: torchvision's ImageFolder.

Construction only lists directories; samples hold paths, and each image is decoded when it is
indexed. The dataset is a few lists of strings, so it pickles cheaply for spawned workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, SupportsIndex

import numpy as np

from ladle.dataset import Dataset
from ladle.formats.images import load_image
from ladle.indexing import check_index
from ladle.validation import check_bool, check_callable, check_path

__all__ = [
    "IMG_EXTENSIONS",
    "ImageFolder",
    "find_classes",
    "has_file_allowed_extension",
    "make_dataset",
]

#: The file extensions ImageFolder reads by default (torchvision's list), matched ignoring case.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

Extensions = str | Sequence[str]


def _extension_tuple(extensions: Extensions) -> tuple[str, ...]:
    if isinstance(extensions, str):
        items: tuple[Any, ...] = (extensions,)
    elif isinstance(extensions, Iterable) and not isinstance(extensions, bytes | Mapping):
        items = tuple(extensions)
    else:
        items = ()
    if not items or not all(isinstance(item, str) for item in items):
        raise TypeError(
            f"extensions should be a string or a non-empty sequence of strings such as "
            f"('.jpg', '.png'), but got extensions={extensions!r}; pass e.g. "
            f"extensions=('.jpg', '.png')"
        )
    if "" in items:
        raise ValueError(
            f"extensions should not hold the empty string, which matches every file, but got "
            f"extensions={extensions!r}; to take every file pass is_valid_file=lambda path: True"
        )
    return tuple(item.lower() for item in items)


def _check_selection(
    extensions: Extensions | None, is_valid_file: Any, allow_empty: Any
) -> tuple[tuple[str, ...] | None, Callable[[str], bool] | None, bool]:
    """The file selection arguments of ImageFolder and make_dataset, checked."""
    suffixes = None if extensions is None else _extension_tuple(extensions)
    accept = check_callable(
        is_valid_file, "is_valid_file", optional=True, fix="pass a function of the file's path"
    )
    return suffixes, accept, check_bool(allow_empty, "allow_empty")


def has_file_allowed_extension(filename: str, extensions: Extensions) -> bool:
    """Whether ``filename`` ends with one of ``extensions``, ignoring case on both sides.

    torchvision lowercases only the file name, so an upper-case extension never matches there;
    here ``".JPG"`` and ``".jpg"`` mean the same.
    """
    return filename.lower().endswith(_extension_tuple(extensions))


def find_classes(directory: str | os.PathLike[str]) -> tuple[list[str], dict[str, int]]:
    """The class names (sorted subdirectories of ``directory``) and their indices.

    Every subdirectory counts, hidden ones included, as in torchvision, so that class indices
    agree with a torchvision ImageFolder over the same tree.
    """
    directory = check_path(directory, "directory")
    with os.scandir(directory) as entries:
        classes = sorted(entry.name for entry in entries if entry.is_dir())
    if not classes:
        raise FileNotFoundError(
            f"found no class folder in root={os.fspath(directory)!r}; ImageFolder expects "
            f"root/<class name>/<image files>, one subdirectory per class"
        )
    return classes, {name: index for index, name in enumerate(classes)}


def make_dataset(
    directory: str | os.PathLike[str],
    class_to_idx: dict[str, int] | None = None,
    extensions: Extensions | None = None,
    is_valid_file: Callable[[str], bool] | None = None,
    allow_empty: bool = False,
) -> list[tuple[str, int]]:
    """The ``(path, class index)`` samples under ``directory``, in torchvision's order.

    ``class_to_idx=None`` finds the classes with :func:`find_classes`, as torchvision does.

    Classes in sorted order; within a class, ``os.walk`` (following symlinks) with directories
    sorted by path and files sorted by name. Exactly one of ``extensions`` and ``is_valid_file``
    (which gets the full path) selects the files.
    """
    directory = check_path(directory, "directory")
    suffixes_given, is_valid_file, allow_empty = _check_selection(
        extensions, is_valid_file, allow_empty
    )
    if (extensions is None) == (is_valid_file is None):
        raise ValueError(
            f"pass exactly one of extensions= and is_valid_file=, but got "
            f"extensions={extensions!r} and is_valid_file={is_valid_file!r}"
        )
    if class_to_idx is None:
        class_to_idx = find_classes(directory)[1]
    if not isinstance(class_to_idx, Mapping) or not all(
        isinstance(name, str)
        and isinstance(index, int | np.integer)
        and not isinstance(index, bool)
        for name, index in class_to_idx.items()
    ):
        raise TypeError(
            f"class_to_idx should map class folder names (str) to class indices (int), but got "
            f"class_to_idx={class_to_idx!r:.80}; pass e.g. {{'cat': 0, 'dog': 1}}, or None"
        )
    if not class_to_idx:
        raise ValueError(
            "class_to_idx should have at least one class, but got an empty dict; nothing would "
            "be collected"
        )
    suffixes = suffixes_given or ()
    accept = is_valid_file or (lambda path: path.lower().endswith(suffixes))
    root = os.path.expanduser(os.fspath(directory))
    samples: list[tuple[str, int]] = []
    empty = []
    for name in sorted(class_to_idx):
        index = class_to_idx[name]
        found = len(samples)
        folder = os.path.join(root, name)
        if os.path.isdir(folder):
            walk = sorted(os.walk(folder, followlinks=True), key=lambda step: step[0])
            for parent, _, files in walk:
                for file in sorted(files):
                    path = os.path.join(parent, file)
                    if accept(path):
                        samples.append((path, index))
        if len(samples) == found:
            empty.append(name)
    if empty and not allow_empty:
        accepted = (
            f"with extensions {', '.join(suffixes)}" if suffixes else "that is_valid_file accepts"
        )
        raise FileNotFoundError(
            f"found no file for the classes {', '.join(empty)} under root={root!r} {accepted}; "
            f"add images to those folders, remove them, or pass allow_empty=True"
        )
    return samples


class ImageFolder(Dataset[tuple[Any, Any]]):
    """Images in ``root/<class name>/**/<file>``; samples are ``(image, class index)``.

    torchvision's ``ImageFolder`` (and ``DatasetFolder``, through ``extensions=`` and
    ``loader=``). Classes are the sorted subdirectories of ``root``; files are found recursively,
    in sorted order, by extension (:data:`IMG_EXTENSIONS` by default, ignoring case) or by
    ``is_valid_file(path)``. The default ``loader`` is :func:`ladle.formats.images.load_image`:
    an ``(H, W, 3)`` uint8 RGB array, read-only. Attributes as in torchvision: ``classes``,
    ``class_to_idx``, ``samples`` (``(path, class index)`` pairs), ``imgs`` (the same list) and
    ``targets``. The torchvision pipeline::

        # torchvision.datasets.ImageFolder(root, transform=T.Compose([
        #     T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()]))
        dataset = ImageFolder(root, transform=ladle.transforms.Compose([
            ladle.transforms.Resize(256),
            ladle.transforms.RandomCrop(224),
            ladle.transforms.RandomHorizontalFlip(),
            ladle.transforms.ToFloat(),
            ladle.transforms.ToCHW(),
        ]))
        loader = ladle.DataLoader(dataset, batch_size=64, shuffle=True, num_workers=8, seed=0)

    Random transforms draw from ``ladle.sample_rng()``, so with ``seed=`` every image gets the
    same augmentation for any number of workers.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        loader: Callable[[str], Any] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
        extensions: Extensions | None = None,
    ) -> None:
        if extensions is not None and is_valid_file is not None:
            raise ValueError(
                f"ImageFolder takes extensions= or is_valid_file=, not both, but got "
                f"extensions={extensions!r} and is_valid_file={is_valid_file!r}; fold the "
                f"extension check into is_valid_file"
            )
        self.root = os.path.expanduser(check_path(root, "root"))
        if not os.path.isdir(self.root):
            raise FileNotFoundError(
                f"ImageFolder root={self.root!r} is not a directory; pass the folder that holds "
                f"one subdirectory per class"
            )
        if extensions is None and is_valid_file is None:
            extensions = IMG_EXTENSIONS
        self.extensions, is_valid_file, allow_empty = _check_selection(
            extensions, is_valid_file, allow_empty
        )
        self.transform = check_callable(transform, "transform", optional=True)
        self.target_transform = check_callable(target_transform, "target_transform", optional=True)
        loader = check_callable(loader, "loader", optional=True, fix="pass a function of a path")
        self.loader: Callable[[str], Any] = load_image if loader is None else loader
        self.classes, self.class_to_idx = self.find_classes(self.root)
        self.samples = self.make_dataset(
            self.root, self.class_to_idx, self.extensions, is_valid_file, allow_empty
        )
        self.imgs = self.samples
        self.targets = [target for _, target in self.samples]

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        """The classes and their indices; override to choose other folders or labels."""
        return find_classes(directory)

    @staticmethod
    def make_dataset(
        directory: str,
        class_to_idx: dict[str, int],
        extensions: Extensions | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:
        """The samples; see the module function :func:`make_dataset`."""
        return make_dataset(directory, class_to_idx, extensions, is_valid_file, allow_empty)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: SupportsIndex) -> tuple[Any, Any]:
        path, target = self.samples[check_index(index, len(self.samples), "ImageFolder")]
        image = self.loader(path)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            return image, self.target_transform(target)
        return image, target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={self.root!r}, {len(self.samples)} samples, "
            f"{len(self.classes)} classes, transform={self.transform!r})"
        )
