"""Google Colab at run time: is this a Colab kernel, and where do its files go.

The two cells every lesson starts with (badge, set-up) are written by the course tooling
(``python -m coursekit sync-colab``, ``coursekit/colab_cells.py``), not by this module: students
install camlib, instructors and maintainers run coursekit. Introduced in lesson 00.

"""

from __future__ import annotations

import sys

#: Where datasets and checkpoints go when a student ticks USE_DRIVE on Colab.
DRIVE_DATA_DIR = "/content/drive/MyDrive/cam-course-data"


def in_colab() -> bool:
    """True when running inside a Google Colab kernel (its ``google.colab`` module is loaded)."""
    return "google.colab" in sys.modules
