"""Sphinx configuration of the fastbp documentation.

Build (as CI does, warnings are errors)::

    python -m sphinx -W --keep-going -n -b html docs docs/_build/html

No network is needed: intersphinx is off, so references to scikit-learn and
numpy objects are plain text (see ``nitpick_ignore_regex``).

The build runs the example gallery (``examples/*.py``, sphinx-gallery) and
writes its pages to ``auto_examples/``; an example that raises fails the
build.  ``python -m sphinx -D plot_gallery=0 ...`` skips running them.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import fastbp  # noqa: E402

project = "fastbp"
author = "fastbp developers"
copyright = "fastbp developers"
version = release = fastbp.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# ``examples`` holds the gallery's sources (read by sphinx-gallery, not as
# pages); ``auto_examples`` is generated from them.
exclude_patterns = ["_build", "scripts", "examples", "Thumbs.db", ".DS_Store"]

# -- MyST -------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# -- autodoc / numpydoc -----------------------------------------------------
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

# Without intersphinx, references to other projects cannot resolve; they
# render as plain code.  Everything of fastbp's own must resolve.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(sklearn|numpy|np|scipy|matplotlib|pandas)(\..*)?"),
    (r"py:.*", r"(ndarray|array-like|sparse matrix|callable|optional)"),
]

# -- Example gallery (sphinx-gallery) ---------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    # Every example runs: a file that does not match would only be shown.
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "show_memory": False,
    "reset_modules": ("matplotlib",),
    "matplotlib_animations": False,
}

# -- HTML -------------------------------------------------------------------
html_theme = "furo"
html_title = f"fastbp {release}"
html_static_path = ["_static"]
