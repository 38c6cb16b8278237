"""What every exercise-check test asks of a check (imported by tests/test_exercises*.py)."""

import pytest

from camlib import exercises as ex


def rejects(check, fn, *expected, error=AssertionError):
    """Run ``check(fn)``; it must raise ``error`` whose message (and notes) holds every ``expected`` text."""
    with pytest.raises(error) as info:
        check(fn)
    message = str(info.value) + "".join(getattr(info.value, "__notes__", []))
    for text in expected:
        assert text in message, f"expected {text!r} in the message:\n{message}"
    return message


def accepts(check, fn, capsys):
    """``check(fn)`` passes and says so."""
    check(fn)
    assert "OK" in capsys.readouterr().out


def graded(check, fn, seed):
    """What the instructor's grader says about ``fn``, on trials drawn from ``seed`` (``''``: right)."""
    spec = ex.spec(check, seed=seed)
    return ex.diagnose(spec, [fn(*t) for t in spec.trials])
