"""Convert a jupytext percent script into a clean lesson notebook (python3 kernel, no outputs).

    .venv/bin/python tools/mknb.py SRC.py lessons/NN_name.ipynb

Keeps the Colab cells that `python -m camlib.course sync-colab` manages if the target exists.
"""
import sys

import jupytext
import nbformat

src, dst = sys.argv[1], sys.argv[2]
nb = jupytext.read(src)
nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
               "language_info": {"name": "python"}}
try:
    old = nbformat.read(dst, as_version=4)
    keep = [c for c in old.cells if set(c.get("metadata", {}).get("tags", [])) & {"colab-badge", "colab-setup"}]
except FileNotFoundError:
    keep = []
for c in nb.cells:
    c.metadata.pop("lines_to_next_cell", None)
    if c.cell_type == "code":
        c.outputs, c.execution_count = [], None
nb.cells = keep + nb.cells
nbformat.validate(nb)
nbformat.write(nb, dst)
print(f"wrote {dst}: {len(nb.cells)} cells")
