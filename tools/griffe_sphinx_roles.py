"""A griffe extension for the API reference: Sphinx roles in docstrings become Markdown code.

The docstrings use Sphinx roles (``:func:`capture```, ``:class:`Explanation```, ``:mod:`gradcam.targets```);
mkdocstrings renders Markdown, where a role would show as literal ``:func:`` text. Each role becomes inline
code of its target (``~a.b.c`` shows ``c``, as in Sphinx); reST's double-backtick literals become single
backticks. Loaded by ``mkdocs.yml`` (mkdocstrings' python handler, ``extensions``).
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(
    r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const|ref|term)(?::[a-z]+)?:`~?([^`]+)`"
)
LITERAL = re.compile(r"``([^`]+)``")


def markdown(text: str) -> str:
    """``text`` with Sphinx roles and reST literals written as Markdown inline code."""
    text = ROLE.sub(lambda m: f"`{m.group(1).split('.')[-1] if m.group(0).count('~') else m.group(1)}`", text)
    return LITERAL.sub(r"`\1`", text)


class SphinxRoles(Extension):
    """Rewrite every docstring griffe loads (see :func:`markdown`)."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
