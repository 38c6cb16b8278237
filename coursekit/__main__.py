"""``python -m coursekit ...``: build, student, check-student, grade, sync-colab, lessons."""

import sys

from .course import main

if __name__ == "__main__":
    sys.exit(main())
