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


def assert_mistakes_distinct(name, seeds=range(12)):
    """On every seed, each listed mistake of check ``name`` differs from the right answer and from every
    other mistake (so each diagnosis can be told apart)."""
    from camlib.exercises._engine import _matches
    for seed in seeds:
        spec = ex.spec(name, seed=seed)
        answers = [[fn(*t) for t in spec.trials] for _, fn in spec.mistakes]
        refs = [spec.reference(*t) for t in spec.trials]

        def same(xs, ys):
            return all(_matches(spec.convert(name, x), y, spec.rtol, spec.atol) for x, y in zip(xs, ys))

        for (text, _), ans in zip(spec.mistakes, answers):
            assert not same(ans, refs), f"seed {seed}: {text!r} passes as right"
        for i in range(len(answers)):
            for j in range(i + 1, len(answers)):
                assert not same(answers[i], answers[j]), f"seed {seed}: mistakes {i} and {j} look alike"
