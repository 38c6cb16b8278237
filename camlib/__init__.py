"""camlib: the small library shared by the lessons of the CAM course.

The modules follow the paper's pipeline::

    images -> model -> (logits, feature maps) -> maps -> boxes -> metrics
      data     models                           cam     localize   metrics

Submodules are imported on demand (``from camlib import cam``) so that importing
``camlib`` stays cheap.
"""

__version__ = "0.1.0"

#: The one place the repository's address is written (Colab badges and install cells use it).
REPO_URL = "https://github.com/cam-course/cam-course"
