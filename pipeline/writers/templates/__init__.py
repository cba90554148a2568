"""Jinja2 templates: the dataset card (card.md.j2) and the corpus report (report.html.j2)."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=2)
def environment(autoescape: bool = False):
    """A Jinja2 environment over this package's templates (autoescape for HTML)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.writers", "templates"),
        autoescape=autoescape, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
