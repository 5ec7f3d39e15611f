"""ImageFolder and image decoding: torchvision's folder rules, checked on hand-built trees, and
Pillow round trips through files and bytes."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ladle
from ladle.errors import FormatError, ImageDecodeError
from ladle.formats.imagefolder import (
    IMG_EXTENSIONS,
    DatasetFolder,
    ImageFolder,
    find_classes,
    has_file_allowed_extension,
    make_dataset,
)
from ladle.formats.images import decode_image, load_image
from ladle.transforms import CenterCrop, RandomCrop


def picture(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(image).save(path)  # the format follows the extension, in any case
    return path


def encode(image: np.ndarray, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Two classes, nested folders, mixed-case extensions and files that are not images."""
    root = tmp_path / "root"
    write(root / "cat" / "a.png", picture((10, 12, 3), 1))
    write(root / "cat" / "B.JPG", picture((9, 9, 3), 2))
    (root / "cat" / "notes.txt").write_text("not an image")
    write(root / "cat" / "sub" / "c.PNG", picture((16, 8, 3), 3))
    write(root / "cat" / "sub" / "deeper" / "d.jpeg", picture((8, 11, 3), 4))
    write(root / "cat" / "sub2" / "e.bmp", picture((12, 12, 3), 5))
    write(root / "dog" / "x.png", picture((14, 9), 6))  # grayscale
    write(root / "dog" / "y.bmp", picture((8, 8, 3), 7))
    (root / "dog" / "y.bmp.bak").write_bytes(b"backup")
    (root / "readme.md").write_text("a file beside the class folders is not a class")
    return root


def test_classes_and_samples_follow_torchvision_order(tree: Path) -> None:
    ds = ImageFolder(tree)
    assert ds.classes == ["cat", "dog"]
    assert ds.class_to_idx == {"cat": 0, "dog": 1}
    expected = [
        ("cat/B.JPG", 0),  # files sorted by name: upper case first
        ("cat/a.png", 0),
        ("cat/sub/c.PNG", 0),  # then subdirectories, walked in sorted path order
        ("cat/sub/deeper/d.jpeg", 0),
        ("cat/sub2/e.bmp", 0),
        ("dog/x.png", 1),
        ("dog/y.bmp", 1),
    ]
    assert ds.samples == [(os.path.join(tree, *p.split("/")), t) for p, t in expected]
    assert ds.imgs is ds.samples
    assert ds.targets == [0, 0, 0, 0, 0, 1, 1]
    assert len(ds) == 7
    assert ds.root == str(tree)
    assert ds.extensions == IMG_EXTENSIONS
    assert find_classes(tree) == (ds.classes, ds.class_to_idx)
    assert ds.find_classes(str(tree)) == (ds.classes, ds.class_to_idx)


def test_extensions_select_files_ignoring_case_on_both_sides(tree: Path) -> None:
    ds = ImageFolder(tree, extensions=(".PNG",))
    assert [Path(p).name for p, _ in ds.samples] == ["a.png", "c.PNG", "x.png"]
    single = ImageFolder(tree, extensions=".bmp")
    assert [Path(p).name for p, _ in single.samples] == ["e.bmp", "y.bmp"]
    with pytest.raises(TypeError, match="extensions="):
        ImageFolder(tree, extensions=[])


@given(stem=st.text(st.characters(codec="ascii", exclude_characters="/\0"), max_size=8))
def test_has_file_allowed_extension_ignores_case(stem: str) -> None:
    for extension in IMG_EXTENSIONS:
        for name in (stem + extension, stem + extension.upper(), stem + extension.title()):
            assert has_file_allowed_extension(name, IMG_EXTENSIONS)
            assert has_file_allowed_extension(name, extension.upper())
    assert not has_file_allowed_extension(stem + ".txt", IMG_EXTENSIONS)


def test_is_valid_file_gets_the_full_path_and_replaces_extensions(tree: Path) -> None:
    seen: list[str] = []

    def valid(path: str) -> bool:
        seen.append(path)
        return os.sep + "sub" in path or path.endswith(".bak")

    ds = ImageFolder(tree, is_valid_file=valid, allow_empty=True)
    assert all(os.path.isabs(path) and path.startswith(str(tree)) for path in seen)
    assert len(seen) == 9  # every file under the class folders, images or not
    names = [os.path.relpath(path, tree) for path, _ in ds.samples]
    assert names == [
        os.path.join("cat", "sub", "c.PNG"),
        os.path.join("cat", "sub", "deeper", "d.jpeg"),
        os.path.join("cat", "sub2", "e.bmp"),
        os.path.join("dog", "y.bmp.bak"),
    ]
    assert ds.extensions is None


BOTH_OR_NEITHER = "Both extensions and is_valid_file cannot be None or not None at the same time"


def _load_path(path: str) -> str:
    return path


def _any_file(path: str) -> bool:
    return True


@pytest.mark.parametrize(
    "make",
    [
        lambda root: ImageFolder(root, extensions=(".png",), is_valid_file=_any_file),
        lambda root: DatasetFolder(root, _load_path, (".png",), is_valid_file=_any_file),
        lambda root: DatasetFolder(root, _load_path),
        lambda root: make_dataset(root, {"cat": 0}),
        lambda root: make_dataset(root, {"cat": 0}, IMG_EXTENSIONS, _any_file),
        lambda root: DatasetFolder.make_dataset(root, {"cat": 0}),
    ],
    ids=[
        "ImageFolder both",
        "DatasetFolder both",
        "DatasetFolder neither",
        "make_dataset neither",
        "make_dataset both",
        "DatasetFolder.make_dataset neither",
    ],
)
def test_extensions_and_is_valid_file_are_exclusive_as_in_torchvision(
    tree: Path, make: Any
) -> None:
    with pytest.raises(ValueError, match=rf"^{BOTH_OR_NEITHER}, but got extensions=.*exactly one"):
        make(tree)


def test_class_to_idx_must_be_given_to_the_method_and_non_empty(tree: Path) -> None:
    with pytest.raises(ValueError, match=r"^The class_to_idx parameter cannot be None"):
        DatasetFolder.make_dataset(str(tree), None, IMG_EXTENSIONS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^'class_to_index' must have at least one entry"):
        make_dataset(tree, {}, extensions=IMG_EXTENSIONS)
    assert make_dataset(tree, None, IMG_EXTENSIONS) == ImageFolder(tree).samples


@pytest.mark.parametrize(
    ("options", "listed"),
    [
        ({}, ", ".join(IMG_EXTENSIONS)),
        ({"extensions": ".png"}, ".png"),  # a string is listed as it is, as in torchvision
        ({"extensions": [".PNG", ".bmp"]}, ".PNG, .bmp"),
    ],
)
def test_empty_class_is_torchvisions_file_not_found_error_unless_allowed(
    tree: Path, options: dict[str, Any], listed: str
) -> None:
    (tree / "empty").mkdir()
    (tree / "empty" / "notes.txt").write_text("no images here")
    (tree / "missing").mkdir()
    expected = (
        f"Found no valid file for the classes empty, missing. Supported extensions are: {listed}."
    )
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(expected)}.*allow_empty=True"):
        ImageFolder(tree, **options)
    ds = ImageFolder(tree, allow_empty=True, **options)
    assert ds.classes == ["cat", "dog", "empty", "missing"]
    assert ds.class_to_idx == {"cat": 0, "dog": 1, "empty": 2, "missing": 3}
    assert set(ds.targets) <= {0, 1}


def test_empty_class_under_is_valid_file_names_it(tree: Path) -> None:
    with pytest.raises(
        FileNotFoundError,
        match=r"^Found no valid file for the classes cat, dog\. is_valid_file accepted none",
    ):
        ImageFolder(tree, is_valid_file=lambda path: path.endswith(".md"))


def test_root_without_class_folders_or_missing_is_an_error_naming_it(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    write(flat / "a.png", picture((4, 4, 3)))
    with pytest.raises(FileNotFoundError, match=f"^Couldn't find any class folder in {flat}"):
        ImageFolder(flat)
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=f"root={str(missing)!r} is not a directory"):
        ImageFolder(missing)


@pytest.mark.parametrize(
    ("name", "selected"),
    [
        *((f"x{extension}", True) for extension in IMG_EXTENSIONS),
        *((f"x{extension.upper()}", True) for extension in IMG_EXTENSIONS),
        ("x.Jpeg", True),
        ("x.tar.png", True),
        ("x.gif", False),
        ("x.jpg.txt", False),
        ("xjpg", False),
        ("x.npy", False),
    ],
)
def test_default_extensions_match_torchvisions_ignoring_the_files_case(
    tmp_path: Path, name: str, selected: bool
) -> None:
    assert has_file_allowed_extension(name, IMG_EXTENSIONS) is selected
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / name).write_bytes(b"listed, never decoded")
    ds = ImageFolder(tmp_path, allow_empty=True)
    assert [Path(path).name for path, _ in ds.samples] == ([name] if selected else [])


def test_symlinked_class_folders_subfolders_and_files_are_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / "linked_class" / "a.png", picture((4, 4, 3)))
    write(elsewhere / "linked_sub" / "b.png", picture((4, 4, 3)))
    write(elsewhere / "c.png", picture((4, 4, 3)))
    root = tmp_path / "root"
    write(root / "real" / "z.png", picture((4, 4, 3)))
    (root / "real" / "sub").symlink_to(elsewhere / "linked_sub", target_is_directory=True)
    (root / "real" / "y.png").symlink_to(elsewhere / "c.png")
    (root / "linked").symlink_to(elsewhere / "linked_class", target_is_directory=True)
    ds = ImageFolder(root)
    assert ds.classes == ["linked", "real"]
    assert [os.path.relpath(path, root) for path, _ in ds.samples] == [
        os.path.join("linked", "a.png"),
        os.path.join("real", "y.png"),
        os.path.join("real", "z.png"),
        os.path.join("real", "sub", "b.png"),
    ]
    assert ds.targets == [0, 1, 1, 1]


def test_dataset_folder_takes_torchvisions_positional_arguments(tmp_path: Path) -> None:
    for name, value in (("cat/a.npy", 1), ("cat/b.NPY", 2), ("dog/c.npy", 3)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        with open(tmp_path / name, "wb") as file:
            np.save(file, np.full(2, value))  # np.save(path) would add a .npy suffix
    (tmp_path / "dog" / "d.png").write_bytes(b"not selected")
    extensions = (".npy",)
    ds = DatasetFolder(str(tmp_path), np.load, extensions, lambda x: x * 10, lambda target: -target)
    assert ds.extensions is extensions and ds.loader is np.load
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert [Path(path).name for path, _ in ds.samples] == ["a.npy", "b.NPY", "c.npy"]
    assert ds.targets == [0, 0, 1]
    assert not hasattr(ds, "imgs")
    sample, target = ds[2]
    np.testing.assert_array_equal(sample, [30, 30])
    assert target == -1
    chosen = DatasetFolder(
        tmp_path, np.load, is_valid_file=lambda p: p.endswith("a.npy"), allow_empty=True
    )
    assert chosen.extensions is None and len(chosen) == 1
    with pytest.raises(TypeError, match="loader"):
        DatasetFolder(tmp_path, None, extensions)  # type: ignore[arg-type]


def test_make_dataset_is_called_with_torchvisions_keywords(tree: Path) -> None:
    calls: list[dict[str, Any]] = []

    class Recording(ImageFolder):
        @staticmethod
        def make_dataset(  # type: ignore[override]
            directory: str, class_to_idx: dict[str, int], **options: Any
        ) -> list[tuple[str, int]]:
            calls.append({"class_to_idx": class_to_idx, **options})
            return [(os.path.join(directory, "cat", "a.png"), 0)]

    ds = Recording(tree)
    assert calls == [
        {
            "class_to_idx": {"cat": 0, "dog": 1},
            "extensions": IMG_EXTENSIONS,
            "is_valid_file": None,
            "allow_empty": False,
        }
    ]
    assert ds.imgs is ds.samples and ds.targets == [0]


def test_subclass_may_choose_its_classes(tree: Path) -> None:
    class DogsOnly(ImageFolder):
        def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
            return ["dog"], {"dog": 7}

    ds = DogsOnly(tree)
    assert ds.targets == [7, 7]
    assert [Path(p).name for p, _ in ds.samples] == ["x.png", "y.bmp"]


def test_png_round_trips_losslessly_and_grayscale_becomes_rgb(tree: Path) -> None:
    ds = ImageFolder(tree)
    image, target = ds[1]  # cat/a.png
    assert target == 0
    assert image.dtype == np.uint8 and image.shape == (10, 12, 3)
    np.testing.assert_array_equal(image, picture((10, 12, 3), 1))
    gray, target = ds[5]  # dog/x.png, mode L
    assert target == 1 and gray.shape == (14, 9, 3)
    for channel in range(3):
        np.testing.assert_array_equal(gray[:, :, channel], picture((14, 9), 6))


def test_decode_image_modes_keep_numpys_natural_shape() -> None:
    rgb = picture((5, 7, 3))
    np.testing.assert_array_equal(decode_image(encode(rgb, "PNG")), rgb)
    gray = picture((5, 7))
    data = encode(gray, "PNG")
    assert decode_image(data, mode="L").shape == (5, 7)
    assert decode_image(data, mode=None).shape == (5, 7)
    assert decode_image(bytearray(data), mode="RGBA").shape == (5, 7, 4)
    np.testing.assert_array_equal(decode_image(memoryview(data), mode=None), gray)
    np.testing.assert_array_equal(decode_image(np.frombuffer(data, np.uint8), mode=None), gray)


def test_decoded_array_is_read_only_and_owns_its_pixels() -> None:
    data = encode(picture((4, 4, 3)), "PNG")
    image = decode_image(data)
    assert not image.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        image[0, 0, 0] = 1
    image.copy()[0, 0, 0] = 1  # the documented way to get a writable one


def test_jpeg_decodes_to_the_right_shape(tmp_path: Path) -> None:
    original = picture((20, 30, 3))
    path = write(tmp_path / "x.jpg", original)
    for image in (load_image(path), decode_image(path.read_bytes())):
        assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    assert load_image(path, mode="L").shape == (20, 30)


def test_undecodable_data_is_a_value_error_chaining_pillows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"could not decode 12 bytes starting b'not an i'") as e:
        decode_image(b"not an image")
    assert isinstance(e.value.__cause__, PIL.UnidentifiedImageError)
    truncated = encode(picture((32, 32, 3)), "PNG")[:-60]
    with pytest.raises(ValueError, match="could not decode") as e:
        decode_image(truncated)
    assert isinstance(e.value.__cause__, OSError)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG but not really")
    with pytest.raises(ImageDecodeError, match=f"could not decode {str(broken)!r}") as caught:
        load_image(broken)
    assert caught.value.path == str(broken) and isinstance(caught.value, FormatError | ValueError)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    with pytest.raises(TypeError, match=r"use load_image\(path\)"):
        decode_image(str(broken))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mode="):
        decode_image(b"", mode=3)  # type: ignore[arg-type]


def test_construction_opens_no_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"only decoded when indexed")
    ds = ImageFolder(tmp_path)
    assert len(ds) == 1
    with pytest.raises(FormatError, match=r"broken\.png"):
        ds[0]


UNDECODABLE = {
    "garbage.jpg": b"this is no JPEG at all",
    "garbage.png": b"\x89PNG\r\n\x1a\n but nothing after the signature",
    "empty.png": b"",
    "truncated.png": encode(picture((32, 32, 3)), "PNG")[:-80],
    "truncated.jpg": encode(picture((64, 64, 3)), "JPEG")[:300],
    "text.webp": b"RIFF....WEBPVP8 not really",
}


@pytest.mark.parametrize("name", sorted(UNDECODABLE))
def test_undecodable_file_is_an_oserror_naming_it_as_pillows_are(tmp_path: Path, name: str) -> None:
    path = tmp_path / "c" / name
    path.parent.mkdir()
    path.write_bytes(UNDECODABLE[name])
    ds = ImageFolder(tmp_path)
    with pytest.raises(
        OSError, match=rf"could not decode {re.escape(repr(str(path)))}.*is_valid_file="
    ) as caught:
        ds[0]
    error = caught.value
    assert isinstance(error, ImageDecodeError | FormatError | ValueError)
    assert error.path == str(path) and error.record is None  # type: ignore[attr-defined]
    assert isinstance(error.__cause__, OSError | SyntaxError | ValueError)
    with contextlib.suppress(OSError):  # how torchvision code guards: nothing else to change
        ds[0]


def test_format_errors_pickle_with_their_path_record_and_notes() -> None:
    for error in (FormatError("bad shard", "/s.shard", 3), ImageDecodeError("bad", "/x.png")):
        error.add_note("a note")
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert (copy.path, copy.record, copy.__notes__) == (error.path, error.record, ["a note"])


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_undecodable_image_reaches_the_main_process_as_the_same_oserror(
    tree: Path, worker_type: str
) -> None:
    broken = tree / "dog" / "z.png"
    broken.write_bytes(UNDECODABLE["truncated.png"])
    ds = ImageFolder(tree, transform=CenterCrop(4))
    loader = ladle.DataLoader(ds, batch_size=4, num_workers=2, worker_type=worker_type)
    with pytest.raises(OSError, match="could not decode") as caught:
        list(loader)
    error = caught.value
    assert type(error) is ImageDecodeError and error.path == str(broken)
    assert any("Raised in ladle worker" in note for note in error.__notes__)


def test_transforms_loader_and_indexing(tree: Path) -> None:
    ds = ImageFolder(
        tree,
        transform=lambda image: image.shape,
        target_transform=lambda target: f"class {target}",
        loader=lambda path: np.zeros((len(os.path.basename(path)), 1)),
    )
    assert ds[0] == ((5, 1), "class 0")  # B.JPG
    assert ds[-1] == ds[6] == ((5, 1), "class 1")  # y.bmp
    assert ds[np.int64(2)] == ((5, 1), "class 0")
    for bad in (7, -8):
        with pytest.raises(IndexError, match=rf"index {bad} is out of range .* size 7"):
            ds[bad]


def test_pickles_as_paths_only(tree: Path) -> None:
    ds = ImageFolder(tree, transform=CenterCrop(4))
    data = pickle.dumps(ds)
    assert len(data) < 2000
    copy = pickle.loads(data)
    assert copy.samples == ds.samples and copy.imgs is copy.samples
    np.testing.assert_array_equal(copy[3][0], ds[3][0])


def test_loader_with_workers_collates_center_crops(tree: Path) -> None:
    ds = ImageFolder(tree, transform=CenterCrop(8))
    batches = list(ladle.DataLoader(ds, batch_size=4, num_workers=2))
    assert [len(labels) for _, labels in batches] == [4, 3]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    assert images.shape == (7, 8, 8, 3) and images.dtype == np.uint8
    expected = [CenterCrop(8)(load_image(path)) for path, _ in ds.samples]
    np.testing.assert_array_equal(images, np.stack(expected))
    assert labels.dtype == np.int64 and labels.tolist() == ds.targets


def test_seeded_random_crops_are_identical_for_any_number_of_workers(tree: Path) -> None:
    ds = ImageFolder(tree, transform=RandomCrop(6))

    def run(num_workers: int, seed: int = 7) -> list[Any]:
        loader = ladle.DataLoader(
            ds, batch_size=3, shuffle=True, num_workers=num_workers, seed=seed
        )
        return [(images.copy(), labels.copy()) for images, labels in loader]

    inline = run(0)
    workers = run(2)
    assert len(inline) == len(workers) == 3
    for (a, x), (b, y) in zip(inline, workers, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(x, y)
    other = run(0, seed=8)
    assert any(not np.array_equal(a, b) for (a, _), (b, _) in zip(inline, other, strict=True)), (
        "a different seed should change the crops or the order"
    )
