"""Google Colab at run time: is this a Colab kernel, and where do its files go.

The two cells every lesson starts with (badge, set-up) are written by the course tooling
(``python -m coursekit sync-colab``, ``coursekit/colab_cells.py``), not by this module: students
install camlib, instructors and maintainers run coursekit. Introduced in lesson 00.

"""

from __future__ import annotations

import os
import sys
from pathlib import PurePosixPath

#: Where the set-up cell mounts Google Drive.
DRIVE_MOUNT = "/content/drive"
#: Where datasets and checkpoints go when a student ticks USE_DRIVE on Colab.
DRIVE_DATA_DIR = DRIVE_MOUNT + "/MyDrive/cam-course-data"
#: Where decoded-image caches go on Colab when the data folder is on Drive: the runtime's own disk
#: (see :func:`camlib.config.cache_dir`).
LOCAL_CACHE_DIR = "/content/camlib-cache"


def in_colab() -> bool:
    """True when running inside a Google Colab kernel (its ``google.colab`` module is loaded)."""
    return "google.colab" in sys.modules


def on_drive(path: str | os.PathLike) -> bool:
    """Whether ``path`` lies on Colab's Google Drive mount (:data:`DRIVE_MOUNT`)."""
    p = PurePosixPath(os.path.abspath(os.fspath(path)))
    return p == PurePosixPath(DRIVE_MOUNT) or PurePosixPath(DRIVE_MOUNT) in p.parents
