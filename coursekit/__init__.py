"""coursekit: the tooling that instructors and maintainers run on the course (not installed by students).

* ``course``      build the course (HTML, REPORT.md), the student edition, grading, ``sync-colab``;
* ``grade``       grading students' notebooks, with the checks outside their kernels;
* ``sources``     the jupytext percent sources in ``lessons/*.py`` and the notebooks made from them;
* ``colab_cells`` the Colab badge and set-up cell every lesson starts with.

Run from the repository root: ``python -m coursekit <command>`` (the Makefile does).
"""
