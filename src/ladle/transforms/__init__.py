"""Image transforms on NumPy arrays, with torchvision's names and argument semantics.

Images are laid out as Pillow decodes them: ``(H, W)`` grayscale or ``(H, W, C)``. The geometric
transforms (flip, crops, resize) take that layout, so apply them before :class:`ToCHW`;
:class:`Normalize` takes either layout (``layout="CHW"``, torchvision's, by default).

Transforms never write into their input. Their output may be a view of it (a flip, a crop that
needs no padding, :class:`ToCHW`, a resize to the same size), so copy before writing into one;
:class:`ToFloat` always returns a fresh array.

Random transforms draw from ``rng=`` when a ``numpy.random.Generator`` is given, and otherwise
from :func:`ladle.sample_rng`, the generator of the sample being loaded: with the loader's
``seed`` set, the same sample gets the same crop and flip for any ``num_workers``, and after a
resume. :class:`Compose` passes its ``rng`` on to each transform. Every transform is a plain
class that pickles, for worker processes.

The package is split by concept: ``base`` (the Transform class and shared checks), ``geometry``
(flip, crops, resize), ``resized_crop`` (the ImageNet crop, and its fused JPEG decode),
``pixels`` (Normalize, ToFloat, layout, and the three fused) and ``compose``; every public
name is re-exported here, and its ``__module__`` is this package, so pickles name
``ladle.transforms.RandomCrop`` whichever module defines it.
"""

from ladle.transforms.base import Transform
from ladle.transforms.compose import Compose, Lambda
from ladle.transforms.geometry import CenterCrop, RandomCrop, RandomHorizontalFlip, Resize
from ladle.transforms.pixels import Normalize, NormalizeToCHW, ToCHW, ToFloat, ToHWC
from ladle.transforms.resized_crop import DecodeRandomResizedCrop, RandomResizedCrop

__all__ = [
    "CenterCrop",
    "Compose",
    "DecodeRandomResizedCrop",
    "Lambda",
    "Normalize",
    "NormalizeToCHW",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "Resize",
    "ToCHW",
    "ToFloat",
    "ToHWC",
    "Transform",
]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
