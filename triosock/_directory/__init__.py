"""The chat directory: the interface in :mod:`._abc`, the in-process default in
:mod:`._inprocess`.
"""

from __future__ import annotations

from ._abc import Directory, NickLost, Repair, Returned
from ._inprocess import InProcessDirectory

__all__ = ["Directory", "InProcessDirectory", "NickLost", "Repair", "Returned"]
