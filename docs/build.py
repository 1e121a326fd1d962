"""Build the documentation site offline from the notebooks, into docs/_site/ (no Quarto needed).

    python docs/build.py            # the site, into docs/_site/ (open docs/_site/index.html)
    python docs/build.py --readme   # only README.md, rendered from nbs/index.ipynb (the home page)

Each notebook of nbs/ becomes a page, with the outputs saved in it (nothing is executed again): the first cell's
`# title` and `> summary` head the page; `#| hide` cells are left out; an `#| export` cell's source gives way to the
API reference of what it defines (nbdev's `show_doc`: the signature with each parameter's docments comment, the
docstring, and a link to the source line); `#| exports` keeps the source too; `#| echo: false` hides a cell's
input; backticked names are linked to their reference (nbdev's own lookup) and every link into the site is made
relative, so the site works from a subfolder or from `file://`. Sphinx with myst-nb renders the pages, with the furo
theme's navigation and Sphinx's search; `$...$` and `$$...$$` math is typeset by MathJax served from the site itself.
The site's sources are this folder: this script, Sphinx's configuration (conf.py) and the static assets (_static/);
the output folder _site/ is not versioned. Where Quarto is installed, `nbdev_docs` still builds nbdev's own site
from the same notebooks.
"""
from __future__ import annotations

import argparse
import ast
import configparser
import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent  # the site's sources: this script, conf.py, _static/
ROOT = DOCS.parent
NBS = ROOT / 'nbs'
SITE = DOCS / '_site'  # the built site (ignored by git)
DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+):?\s*(.*?)\s*$')


def _settings() -> dict:
    c = configparser.ConfigParser(); c.read(ROOT / 'settings.ini')
    return dict(c['DEFAULT'])


def page_name(nb: Path) -> str:
    "nbdev's page name: the notebook's name without its number prefix (00_core -> core)."
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb.stem)


def slug(text: str) -> str:
    "The anchor myst gives a heading (GitHub's rule: lower case, punctuation but - and _ dropped, spaces to -)."
    return re.sub(r'[^\w\- ]', '', text.strip().lower()).replace(' ', '-')


def _directives(src: str) -> tuple[dict, str]:
    flags, body = {}, []
    for line in src.splitlines():
        m = DIRECTIVE.match(line)
        if m: flags[m.group(1)] = m.group(2)
        else: body.append(line)
    return flags, '\n'.join(body).strip('\n')


def _patched_class(node) -> str | None:
    "The class a fastcore `@patch` function is added to (its `self:Cls` annotation), or None for a plain function."
    if not any(getattr(d, 'id', None) == 'patch' or getattr(getattr(d, 'func', None), 'id', None) == 'patch'
               for d in getattr(node, 'decorator_list', [])): return None
    args = node.args.posonlyargs + node.args.args
    ann = args[0].annotation if args else None
    return ann.id if isinstance(ann, ast.Name) else None


def _defined(src: str) -> list[str]:
    "Public functions and classes an exported cell defines, in order; a `@patch`ed method as `Class.method`."
    try: tree = ast.parse(src)
    except SyntaxError: return []
    out = []
    for n in tree.body:
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or n.name.startswith('_'): continue
        cls = _patched_class(n) if not isinstance(n, ast.ClassDef) else None
        out.append(f'{cls}.{n.name}' if cls else n.name)
    return out


def _resolve(module, dotted: str):
    "`name` or `Class.method` in `module`, or None."
    obj = module
    for part in dotted.split('.'): obj = getattr(obj, part, None)
    return obj


def api_reference(module, name: str, git_url: str, lib: str) -> str:
    "The show_doc Markdown of `module.name`, its source link pointing at the right line."
    from nbdev.showdoc import show_doc
    obj = _resolve(module, name)
    md = show_doc(obj, title_level=3)._repr_markdown_()
    md = re.sub(r'^\s*---\s*\n', '', md)
    md = re.sub(r'^\[source\]\([^)]*\)\{[^}]*\}\s*\n', '', md.lstrip(), flags=re.M)
    try:
        line = inspect.getsourcelines(obj)[1]
        rel = Path(inspect.getsourcefile(obj)).resolve().relative_to(ROOT)
        link = f'<a class="source-link" href="{git_url}/blob/main/{rel.as_posix()}#L{line}">source</a>'
        md = re.sub(r'^(#+ .*)$', lambda m: f'{m.group(1)}\n\n{link}', md, count=1, flags=re.M)  # under the heading
    except (OSError, TypeError, ValueError): pass
    return md


def _anchor(a: str | None) -> str:
    return '#' + slug(a[1:].split('.')[0]) if a else ''  # a method's link goes to its class's reference


def _links(text: str, site_url: str, rel_root: str) -> str:
    "Links into this site made relative (to the .ipynb pages, which Sphinx resolves): absolute ones, `page.html` ones and `NN_name.ipynb` ones; Pandoc attributes dropped."
    text = re.sub(r'\)\{[^}\n]*\}', ')', text)
    text = re.sub(r'\[(`[\w.]+`)\]\([^)\s]*#_[\w.\-]*\)', r'\1', text)  # a private name has no reference section: no link
    text = re.sub(r'\]\((?:\.\./)*nbs/', '](' + rel_root, text)  # README-style links to the notebooks from the repository root
    if site_url:
        text = re.sub(re.escape(site_url.rstrip('/')) + r'/([\w/\-]+)\.html(#[\w.\-]+)?', lambda m: f'{rel_root}{m.group(1)}.ipynb{_anchor(m.group(2))}', text)
    text = re.sub(r'\]\((?![a-z]+:|#)([\w/.\-]+?)\.html(#[\w.\-]+)?\)', lambda m: f']({m.group(1)}.ipynb{_anchor(m.group(2))})', text)
    def nb(m):
        path = Path(m.group(1))
        return f']({(path.parent / page_name(path)).as_posix()}.ipynb{m.group(2) or ""})'
    return re.sub(r'\]\((?![a-z]+:|#)([\w/.\-]*\d+[a-zA-Z0-9]*_[\w\-]+)\.ipynb(#[\w.\-]+)?\)', nb, text)


def convert(nb_path: Path, site_url: str, rel_root: str, s: dict, lookup) -> dict:
    "One notebook of nbs/ as a MyST notebook: its page."
    nb = json.loads(nb_path.read_text())
    module = None
    out = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            out.append({'cell_type': 'markdown', 'metadata': {}, 'source': _links(lookup.linkify(src), site_url, rel_root)})
            continue
        if c['cell_type'] != 'code': continue
        flags, body = _directives(src)
        if 'default_exp' in flags:
            name = flags['default_exp']
            module = importlib.import_module(s['lib_name'] if name == '__init__' else f"{s['lib_name']}.{name}")
            continue
        if 'hide' in flags or flags.get('include') == 'false': continue
        if 'export' in flags or 'exports' in flags or 'exporti' in flags:
            if 'exports' in flags: out.append({'cell_type': 'code', 'metadata': {}, 'source': body, 'outputs': [], 'execution_count': None})
            if 'exporti' not in flags and module is not None:
                for name in _defined(body):
                    if _resolve(module, name) is None: continue
                    md = api_reference(module, name, s['git_url'], s['lib_name'])
                    out.append({'cell_type': 'markdown', 'metadata': {}, 'source': _links(md, site_url, rel_root)})
            continue
        tags = []
        if flags.get('echo') == 'false': tags.append('remove-input')
        if flags.get('output') == 'false': tags.append('remove-output')
        outputs = []
        for o in c.get('outputs', []):
            o = json.loads(json.dumps(o))
            d = o.get('data')
            if d is not None:
                if 'application/vnd.jupyter.widget-view+json' in d: continue  # a live widget: nothing to show without a kernel
                if 'text/markdown' in d:
                    md = ''.join(d['text/markdown']) if isinstance(d['text/markdown'], list) else d['text/markdown']
                    d['text/markdown'] = _links(re.sub(r'^\s*---\s*\n', '', md), site_url, rel_root)
            outputs.append(o)
        if not body.strip(): continue
        out.append({'cell_type': 'code', 'metadata': {'tags': tags} if tags else {}, 'source': body, 'outputs': outputs, 'execution_count': None})
    return {'cells': out, 'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'},
                                       'language_info': {'name': 'python', 'pygments_lexer': 'ipython3'}}, 'nbformat': 4, 'nbformat_minor': 5}


def build(out: Path = SITE) -> dict:
    "The whole site into `out` (replaced); returns its pages and the build's warnings."
    from nbdev.doclinks import NbdevLookup
    out = Path(out).resolve()
    if out in (ROOT, DOCS) or DOCS.is_relative_to(out) or NBS.is_relative_to(out):
        raise ValueError(f'{out} holds the sources: build into a folder of its own (default {SITE})')
    s = _settings()
    site_url = s.get('doc_host', '').rstrip('/') + s.get('doc_baseurl', '')
    lookup = NbdevLookup()
    work = Path(tempfile.mkdtemp(prefix='lwmecps-docs-'))
    src = work / 'src'; src.mkdir()
    modules, tutorials = [], []
    for nb in sorted(NBS.glob('*.ipynb')) + sorted((NBS / 'tutorials').glob('*.ipynb')):
        if nb.name.startswith('_'): continue
        sub = nb.parent.relative_to(NBS).as_posix()
        sub = '' if sub == '.' else sub
        page = page_name(nb)
        conv = convert(nb, site_url, '../' if sub else '', s, lookup)
        (src / sub).mkdir(parents=True, exist_ok=True)
        (src / sub / f'{page}.ipynb').write_text(json.dumps(conv, indent=1))
        if page != 'index': (tutorials if sub else modules).append(f'{sub}/{page}' if sub else page)
    for images in NBS.rglob('images'):
        if images.is_dir(): shutil.copytree(images, src / images.relative_to(NBS), dirs_exist_ok=True)
    idx = json.loads((src / 'index.ipynb').read_text())
    idx['cells'].append({'cell_type': 'markdown', 'metadata': {}, 'source':
        '```{toctree}\n:hidden:\n:caption: Tutorials\n:maxdepth: 1\n\n' + '\n'.join(tutorials) + '\n```\n\n'
        '```{toctree}\n:hidden:\n:caption: API reference\n:maxdepth: 1\n\n' + '\n'.join(modules) + '\n```\n'})
    (src / 'index.ipynb').write_text(json.dumps(idx, indent=1))
    html = work / 'html'
    try:
        r = subprocess.run([sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-j', '2', '-c', str(DOCS), '-d', str(work / 'doctrees'),
                            str(src), str(html)], capture_output=True, text=True)
        if r.returncode != 0: raise RuntimeError(f'sphinx failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}')
        if out.exists(): shutil.rmtree(out)
        shutil.copytree(html, out, ignore=shutil.ignore_patterns('.buildinfo', '.doctrees', 'jupyter_execute', '_sources'))
    finally: shutil.rmtree(work, ignore_errors=True)
    (out / '.nojekyll').write_text('')
    warnings = [l for l in r.stderr.splitlines() if 'WARNING' in l or 'ERROR' in l]
    return {'pages': ['index'] + modules + tutorials, 'warnings': warnings, 'out': str(out)}


def render_readme(index: Path = NBS / 'index.ipynb') -> str:
    "README.md from the home page notebook, as nbdev_readme would make it: its Markdown cells, and its code cells without directives as Python blocks."
    nb = json.loads(index.read_text())
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source']).strip('\n')
        if c['cell_type'] == 'markdown': parts.append(src)
        elif c['cell_type'] == 'code' and src and not DIRECTIVE.match(src.splitlines()[0]): parts.append(f'```python\n{src}\n```')
    return '\n\n'.join(parts) + '\n'


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument('--out', default=str(SITE), help='output folder, replaced (default docs/_site/)')
    ap.add_argument('--readme', action='store_true', help='only write README.md from nbs/index.ipynb')
    a = ap.parse_args()
    if a.readme:
        (ROOT / 'README.md').write_text(render_readme()); print('README.md written from nbs/index.ipynb'); sys.exit(0)
    t0 = time.perf_counter()
    res = build(Path(a.out))
    for w in res['warnings']: print(w, file=sys.stderr)
    size = sum(f.stat().st_size for f in Path(res['out']).rglob('*') if f.is_file()) / 2**20
    print(f"{len(res['pages'])} pages built into {res['out']} ({size:.1f} MiB) in {time.perf_counter() - t0:.0f} s, "
          f"{len(res['warnings'])} warning(s)")
