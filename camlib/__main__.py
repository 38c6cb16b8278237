"""``python -m camlib ...`` is ``python -m camlib.course ...``: build, student, check-student, sync-colab."""

import sys

from .course import main

if __name__ == "__main__":
    sys.exit(main())
