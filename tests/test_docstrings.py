"""A docstring that names a lesson tells the truth about it (CONTRIBUTING.md: "A function's docstring
names the lesson that introduces it").

For every public function, class and method in camlib (``camlib/exercises/`` aside), each docstring
sentence that mentions "lesson NN" (or "lessons NN, MM", "lessons NN-MM") must hold for each lesson
it names: either that lesson's jupytext source (``lessons/NN_*.py``) names the object itself, or the
sentence names -- in :func:`...`, :class:`...`, :meth:`...`, :mod:`...` or backticks -- a camlib object
or module that the lesson's source names (the way the lesson reaches it). A lesson "names" something
in its code or in `backticks` in its prose, not as a plain English word. A lesson number with no
lesson is an error too. The check reads the files only (no import), so it is fast.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAMLIB = ROOT / "camlib"


def lesson_code(source):
    """What a lesson's source names as code: its code lines, and the `backticked` spans of its
    markdown and comments (so a name that is also an English word -- "run", "fit" -- counts only
    where the lesson uses or quotes it)."""
    out = []
    for line in source.splitlines():
        if line.lstrip().startswith("#"):
            out += re.findall(r"`([^`]+)`", line)
        else:
            out.append(line)
    return "\n".join(out)


LESSONS = {p.name[:2]: lesson_code(p.read_text(encoding="utf-8"))
           for p in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))}

# "lesson 03", "Lessons 03, 05 and 06", "lessons 01-03", "lessons 03–06"
LESSON_REF = re.compile(r"\b[Ll]essons?\s+(\d\d(?:\s*(?:,|and|or|&|-|–|to)\s*\d\d)*)")
# :func:`camlib.train.fit`, :class:`~camlib.data.CUB200`, ``fit``, `fit`
NAMED = re.compile(r":(?:func|class|meth|mod|attr|data|obj):`~?([^`<]+?)(?:\s*<([^>]+)>)?`|``([^`]+)``|`([^`]+)`")
ABBREVIATIONS = {"e.g", "i.e", "eq", "eqs", "sec", "fig", "al", "cf", "vs", "no", "approx"}


def sentences(doc):
    """Split a docstring into sentences: paragraphs at blank lines, then at '.', '!' or '?' before a
    capital letter, a backtick or a bracket (not after a common abbreviation such as "e.g." or "Eq.")."""
    out = []
    for para in re.split(r"\n\s*\n", doc):
        text = " ".join(para.split())
        start = 0
        for m in re.finditer(r"[.!?]\s+(?=[A-Z(`\"'])", text):
            word = re.split(r"[\s(]", text[start:m.start()])[-1].lower()
            if word in ABBREVIATIONS:
                continue
            out.append(text[start:m.start() + 1])
            start = m.end()
        out.append(text[start:])
    return [s for s in out if s.strip()]


def lesson_numbers(sentence):
    """The two-digit lesson numbers a sentence names, ranges expanded."""
    found = []
    for group in LESSON_REF.findall(sentence):
        numbers = re.findall(r"\d\d", group)
        seps = re.findall(r"\d\d\s*(,|and|or|&|-|–|to)\s*(?=\d\d)", group)
        found.append(numbers[0])
        for sep, prev, nxt in zip(seps, numbers, numbers[1:]):
            if sep in ("-", "–", "to"):
                found += [f"{n:02d}" for n in range(int(prev) + 1, int(nxt))]
            found.append(nxt)
    return list(dict.fromkeys(found))


def named_references(sentence):
    """The dotted names a sentence cites in reST roles or backticks."""
    refs = []
    for role, target, dbl, sgl in NAMED.findall(sentence):
        name = (target or role or dbl or sgl).strip().rstrip("()")
        if re.fullmatch(r"[A-Za-z_][\w.]*", name):
            refs.append(name)
    return refs


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _index():
    """Every module of camlib, every name it defines (top level and in classes), and the public
    functions, classes and methods to check, as (module path, qualified name, docstring, lineno)."""
    modules, defined, public = set(), set(), []
    for path in sorted(CAMLIB.rglob("*.py")):
        mod = _module_name(path)
        modules.add(mod)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = "exercises" in path.relative_to(CAMLIB).parts
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                    if isinstance(t, ast.Name):
                        defined.add(t.id)
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            defined.add(node.name)
            items = [(node.name, node)]
            if isinstance(node, ast.ClassDef):
                items += [(f"{node.name}.{n.name}", n) for n in node.body
                          if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
                defined.update(n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
            if skip or node.name.startswith("_"):
                continue
            for qual, n in items:
                if not qual.split(".")[-1].startswith("_"):
                    public.append((path.relative_to(ROOT).as_posix(), qual, ast.get_docstring(n) or "", n.lineno))
    return modules, defined, public


def _names_word(source, word):
    return re.search(rf"\b{re.escape(word)}\b", source) is not None


def _names_module(source, module):
    """Whether a lesson's source names a camlib module: by its dotted path, or by importing it."""
    if re.search(rf"\b{re.escape(module)}\b", source):
        return True
    parent, _, leaf = module.rpartition(".")
    for m in re.finditer(rf"from\s+{re.escape(parent)}\s+import\s+(\([^)]*\)|[^\n]*)", source):
        if re.search(rf"\b{re.escape(leaf)}\b", m.group(1)):
            return True
    return False


def reference_reached(ref, source, modules, defined):
    """Whether the camlib object or module a sentence cites (``ref``) is one the lesson's source names."""
    full = ref if ref.startswith("camlib") else f"camlib.{ref}"
    candidates = [full] + [m for m in modules if m.endswith("." + ref)]
    for mod in candidates:
        if mod in modules and mod != "camlib":  # the package itself says nothing
            return _names_module(source, mod)
    leaf = ref.split(".")[-1]
    return leaf in defined and _names_word(source, leaf)


def violations(doc, name, modules, defined, lessons=LESSONS):
    """Each (lesson, sentence) where the docstring of ``name`` names a lesson it cannot show it belongs to."""
    bad = []
    leaf = name.split(".")[-1]
    for sentence in sentences(doc):
        for nn in lesson_numbers(sentence):
            source = lessons.get(nn)
            if source is None:
                bad.append((nn, "no such lesson: " + sentence))
            elif not _names_word(source, leaf) and not any(
                    reference_reached(r, source, modules, defined) for r in named_references(sentence)):
                bad.append((nn, sentence))
    return bad


def test_lessons_found():
    assert len(LESSONS) >= 7 and "03" in LESSONS


def test_rule_catches_and_allows():
    modules, defined, _ = _index()
    lessons = {"03": lesson_code("from camlib import evaluation\nds = CUB200(root)\nevaluation.evaluate_localization(m)\n"
                                 "# We fit a network and run the ToRGB step of `best_iou`.\n")}
    # names a lesson that never calls it and says nothing about the way there
    assert violations("Convert to RGB. Lesson 03 uses it.", "ToRGB", modules, defined, lessons)
    # the lesson names it, in code or in backticks; a plain word of its prose does not count
    assert not violations("The birds (lesson 03).", "CUB200", modules, defined, lessons)
    assert not violations("Lesson 03.", "best_iou", modules, defined, lessons)
    assert violations("Lesson 03.", "ToRGB", modules, defined, lessons)
    assert violations("Called by :func:`camlib.train.fit` (lesson 03).", "ToRGB", modules, defined, lessons)
    # the same sentence names what the lesson does call: a class, a function, a module
    assert not violations("Used by :class:`CUB200`, which lesson 03 loads.", "ToRGB", modules, defined, lessons)
    assert not violations("Called by ``evaluate_localization`` (lesson 03).", "best_iou", modules, defined, lessons)
    assert not violations("Reached through :mod:`camlib.evaluation` in lesson 03.", "best_iou", modules, defined,
                          lessons)
    # ... but not in another sentence, nor an object that is not camlib's, nor a lesson that does not exist
    assert violations("Used by :class:`CUB200`. Lesson 03 needs it.", "ToRGB", modules, defined, lessons)
    assert violations("Like ``torch.flip``, in lesson 03.", "ToRGB", modules, defined, lessons)
    assert violations("The birds (lesson 07).", "CUB200", modules, defined, lessons)
    # lists and ranges name every lesson in them
    assert lesson_numbers("lessons 03-05 and lesson 01; lessons 02, 06 and 00") == ["03", "04", "05", "01", "02",
                                                                                    "06", "00"]
    assert sentences("Eq. 2 of the paper, e.g. a map. Lesson 03 uses it.") == [
        "Eq. 2 of the paper, e.g. a map.", "Lesson 03 uses it."]


def test_docstring_lessons_are_true():
    modules, defined, public = _index()
    assert len(public) > 100  # the walk found the library
    bad = [f"{path}:{line} {name} -> lesson {nn}: {sentence}"
           for path, name, doc, line in public
           for nn, sentence in violations(doc, name, modules, defined)]
    assert not bad, ("docstrings that name a lesson which neither names the object nor, in the same sentence, "
                     "a camlib object or module it reaches it through:\n" + "\n".join(bad))
