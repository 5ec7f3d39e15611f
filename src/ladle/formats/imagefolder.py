"""Lazy datasets of files sorted into one folder per class: torchvision's DatasetFolder and
ImageFolder.

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
    "DatasetFolder",
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
    """The file selection arguments of the folder datasets and make_dataset, checked: exactly one
    of ``extensions`` and ``is_valid_file``, as torchvision requires."""
    suffixes = None if extensions is None else _extension_tuple(extensions)
    accept = check_callable(
        is_valid_file, "is_valid_file", optional=True, fix="pass a function of the file's path"
    )
    if (extensions is None) == (accept is None):
        raise ValueError(
            f"Both extensions and is_valid_file cannot be None or not None at the same time, but "
            f"got extensions={extensions!r} and is_valid_file={is_valid_file!r}; pass exactly "
            f"one of them (to combine both, check the extension inside is_valid_file)"
        )
    return suffixes, accept, check_bool(allow_empty, "allow_empty")


def _extension_text(extensions: Extensions) -> str:
    return extensions if isinstance(extensions, str) else ", ".join(extensions)


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
            f"Couldn't find any class folder in {os.fspath(directory)}: ImageFolder and "
            f"DatasetFolder expect root/<class name>/<files>, one subdirectory per class"
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
    suffixes, accept, allow_empty = _check_selection(extensions, is_valid_file, allow_empty)
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
            "'class_to_index' must have at least one entry to collect any samples, but got "
            "class_to_idx={}; pass e.g. {'cat': 0, 'dog': 1}, or None to find the classes"
        )
    if accept is None:
        ends = suffixes or ()

        def accept(path: str) -> bool:
            return path.lower().endswith(ends)

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
        if extensions is not None:
            which = f"Supported extensions are: {_extension_text(extensions)}"
        else:
            which = "is_valid_file accepted none of their files"
        raise FileNotFoundError(
            f"Found no valid file for the classes {', '.join(empty)}. {which}. Looked under "
            f"root={root!r}: add files to those class folders, remove the folders, or pass "
            f"allow_empty=True"
        )
    return samples


class DatasetFolder(Dataset[tuple[Any, Any]]):
    """Files in ``root/<class name>/**/<file>``; samples are ``(loader(path), class index)``.

    torchvision's ``DatasetFolder``, with its signature: classes are the sorted subdirectories
    of ``root`` (:meth:`find_classes`, which a subclass may override); files are found
    recursively, following symlinks, in sorted order, and selected by exactly one of
    ``extensions`` (matched ignoring case) and ``is_valid_file(path)``. A class without a
    selected file raises FileNotFoundError unless ``allow_empty=True``. Attributes as in
    torchvision: ``root``, ``loader``, ``extensions`` (as given), ``classes``, ``class_to_idx``,
    ``samples`` (``(path, class index)`` pairs) and ``targets``. Construction lists directories
    only; each file is read when its sample is indexed.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        loader: Callable[[str], Any],
        extensions: Extensions | None = None,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> None:
        name = type(self).__name__
        # Checked before the disk is listed, as make_dataset would check them after.
        _check_selection(extensions, is_valid_file, allow_empty)
        self.root = os.path.expanduser(check_path(root, "root"))
        if not os.path.isdir(self.root):
            raise FileNotFoundError(
                f"{name} root={self.root!r} is not a directory; pass the folder that holds "
                f"one subdirectory per class"
            )
        self.loader: Callable[[str], Any] = check_callable(
            loader, "loader", fix="pass a function of a path"
        )
        self.extensions = extensions
        self.transform = check_callable(transform, "transform", optional=True)
        self.target_transform = check_callable(target_transform, "target_transform", optional=True)
        self.classes, self.class_to_idx = self.find_classes(self.root)
        self.samples = self.make_dataset(
            self.root,
            class_to_idx=self.class_to_idx,
            extensions=extensions,
            is_valid_file=is_valid_file,
            allow_empty=allow_empty,
        )
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
        """The samples; see the module function :func:`make_dataset`. ``class_to_idx`` is
        required here, as in torchvision: the classes come from :meth:`find_classes`, which a
        subclass may have overridden, not from the module function."""
        if class_to_idx is None:
            raise ValueError(
                "The class_to_idx parameter cannot be None: pass the classes that find_classes() "
                "found, e.g. self.find_classes(directory)[1]"
            )
        return make_dataset(directory, class_to_idx, extensions, is_valid_file, allow_empty)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: SupportsIndex) -> tuple[Any, Any]:
        path, target = self.samples[check_index(index, len(self.samples), type(self).__name__)]
        sample = self.loader(path)
        if self.transform is not None:
            sample = self.transform(sample)
        if self.target_transform is not None:
            return sample, self.target_transform(target)
        return sample, target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={self.root!r}, {len(self.samples)} samples, "
            f"{len(self.classes)} classes, transform={self.transform!r})"
        )


class ImageFolder(DatasetFolder):
    """Images in ``root/<class name>/**/<file>``; samples are ``(image, class index)``.

    torchvision's ``ImageFolder``: a :class:`DatasetFolder` whose files are selected by
    :data:`IMG_EXTENSIONS` (ignoring case) unless ``is_valid_file`` is given; ``extensions=``,
    which torchvision's ImageFolder lacks, selects other suffixes instead. The default ``loader``
    is :func:`ladle.formats.images.load_image`: an ``(H, W, 3)`` uint8 RGB array, read-only; a
    file it cannot decode raises :class:`ladle.errors.ImageDecodeError`, an OSError as Pillow's
    errors are. ``imgs`` is ``samples``. The torchvision pipeline::

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
        loader: Callable[[str], Any] | None = load_image,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
        extensions: Extensions | None = None,
    ) -> None:
        if extensions is None and is_valid_file is None:
            extensions = IMG_EXTENSIONS
        super().__init__(
            root,
            load_image if loader is None else loader,
            extensions,
            transform,
            target_transform,
            is_valid_file,
            allow_empty,
        )
        self.imgs = self.samples
