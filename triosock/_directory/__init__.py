"""The chat directory: the interface in :mod:`._abc`, the in-process default in
:mod:`._inprocess`.
"""

from __future__ import annotations

from ._abc import Adopted, Directory, HandedOver, NickLost, Repair, Returned
from ._inprocess import InProcessDirectory

__all__ = [
    "Adopted",
    "Directory",
    "HandedOver",
    "InProcessDirectory",
    "NickLost",
    "Repair",
    "Returned",
]
