"""
Sphinx configuration of the rehook-sdk documentation: MyST Markdown pages, the API reference generated from the
docstrings (Google style, read by napoleon), the furo theme. Built with warnings as errors in CI
(tests/test_docs.py); no intersphinx inventories (they cannot be fetched on the machines that build this).

    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

from importlib.metadata import version as _version

project = "rehook-sdk"
author = "rehook-sdk maintainers"
copyright = "2026, rehook-sdk maintainers"
release = _version("rehook-sdk")
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"rehook-sdk {release}"

# `Name` in a docstring is a cross-reference to a Python object.
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
myst_heading_anchors = 3
