"""The tiny LoRA task's pairs: every documented function of a source file, wherever it stands."""

import ast

from trainperf.data.docstrings import extract_pairs

SOURCE = '''
def top(a):
    """Add one.

    More words."""
    return a + 1


class K:
    def method(self):
        """The method."""
        x = 1
        return x

    def stub(self):
        """Only a docstring: skipped."""


if True:
    try:
        def in_try():
            """In a try block."""
            pass
            return None
    except ValueError:
        def in_handler():
            """In a handler."""
            pass
            return None

match 1:
    case 1:
        def in_case():
            """In a match case."""
            pass
            return None

def outer():
    """Outer."""
    def inner():
        """Inner."""
        pass
        return 1
    return inner

value = (lambda: 1)()
'''


def test_every_documented_function_with_a_body_is_a_pair() -> None:
    pairs = {p.key.split(":")[1]: p for p in extract_pairs("m.py", SOURCE)}
    assert set(pairs) == {"top", "method", "in_try", "in_handler", "in_case", "outer", "inner"}
    assert pairs["top"].summary == "Add one."
    assert pairs["method"].code.startswith("def method(self):")
    # the same functions as a walk over every node of the tree finds
    walked = {
        n.name
        for n in ast.walk(ast.parse(SOURCE))
        if isinstance(n, ast.FunctionDef) and len(n.body) >= 2
    }
    assert walked == set(pairs)


def test_a_file_that_does_not_parse_gives_none() -> None:
    assert list(extract_pairs("bad.py", "def f(:\n")) == []
