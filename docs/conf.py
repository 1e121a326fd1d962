"""Sphinx configuration of the documentation site (`python docs/build.py` builds it; see that file).

The pages are the notebooks of nbs/, converted by docs/build.py into a temporary source folder; this file, the
static assets beside it (`_static/`) and the project's settings.ini are the rest of the site's sources. Math in
the notebooks' Markdown (`$...$`, `$$...$$`) is typeset by MathJax 3, served from the site itself: its files come
from the `sphinx-mathjax-offline` package (a dev requirement), nothing is fetched from another host.
"""
import configparser
import importlib.util
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
_settings = configparser.ConfigParser()
_settings.read(HERE.parent / 'settings.ini')
_s = _settings['DEFAULT']

project = _s.get('title', 'lwmecps_nb')
copyright = _s.get('copyright', '')
extensions = ['myst_nb', 'sphinx.ext.mathjax']
nb_execution_mode = 'off'  # the notebooks' saved outputs are the pages' outputs
nb_output_stderr = 'remove'
myst_heading_anchors = 3
myst_enable_extensions = ['colon_fence', 'dollarmath', 'amsmath']
myst_dmath_double_inline = True  # `$$...$$` inside a paragraph is display math too, as in Jupyter
html_theme = 'furo'
html_title = project
html_copy_source = False
html_show_sourcelink = False
html_static_path = ['_static']
html_css_files = ['site.css']
html_favicon = '_static/favicon.svg'
suppress_warnings = ['myst.header']  # show_doc's H3 under a page's H1 is nbdev's layout
exclude_patterns = ['_build', 'jupyter_execute', '**.ipynb_checkpoints']

# MathJax from the site: the combined TeX-to-HTML component, the TeX extensions it loads on demand and its fonts.
mathjax_path = 'mathjax/tex-chtml.js'
MATHJAX_PARTS = ['tex-chtml.js', 'input/tex/extensions', 'output/chtml/fonts']


def mathjax_source() -> Path:
    "The MathJax 3 files that the `sphinx-mathjax-offline` package ships."
    spec = importlib.util.find_spec('sphinx-mathjax-offline')
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError('MathJax is missing: pip install sphinx-mathjax-offline (in the dev extra: pip install -e ".[dev]")')
    return Path(list(spec.submodule_search_locations)[0]) / 'static' / 'mathjax'


def _copy_mathjax(app, exc):
    if exc is not None or app.builder.format != 'html': return
    src, dst = mathjax_source(), Path(app.outdir) / '_static' / 'mathjax'
    for part in MATHJAX_PARTS:
        if (src / part).is_dir(): shutil.copytree(src / part, dst / part, dirs_exist_ok=True)
        else: (dst / part).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src / part, dst / part)


def setup(app):
    mathjax_source()  # fail at the start of a build, not after it
    app.connect('build-finished', _copy_mathjax)
