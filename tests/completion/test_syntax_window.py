"""The syntax filter parses a window around the cursor; its start must not fall inside a block or a docstring."""

from __future__ import annotations

from fimble.completion.filters import FilterContext, Suggestion
from fimble.completion.filters.syntax import no_new_syntax_errors

METHOD = '''
    def method_{i}(self, value):
        """Return the value.

        :param value:
            The value's name, must be a relative path: ``value="foo-"`` and ``numbered=True``
            means that this function won't work (it's a doc).
        """
        return value + {i}
'''


def test_a_good_line_deep_in_a_long_class_is_kept() -> None:
    prefix = "class Store:\n" + "".join(METHOD.format(i=i) for i in range(40)) + "\n    def last(self):\n        "
    suffix = "\n        return result\n"
    assert len(prefix) > 10_000 and "\nclass" not in prefix[-9_000:]  # no line at column 0 near the cursor
    ctx = FilterContext(prefix=prefix, suffix=suffix, language_id="python", path="store.py")
    kept = no_new_syntax_errors(Suggestion("result = self.method_1(2)"), ctx)
    assert kept is not None and kept.text == "result = self.method_1(2)"
    assert no_new_syntax_errors(Suggestion("result = self.method_1(2"), ctx) is None  # still checked
