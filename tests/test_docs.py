"""The documentation site (`python docs/build.py`): README.md is what nbs/index.ipynb renders to, and the site built
offline from the notebooks reads well in a real browser: every page opened in headless Chromium from a subfolder of a
local server, with content, no JavaScript error, no request to another host, no broken internal link or anchor, every
formula typeset by the site's own MathJax, and a working search. Screenshots of the home page and of the meta page's
formulas are kept (`$LWMECPS_ARTIFACTS`, default `artifacts/`, as `docs-home.png` and `docs-meta-math.png`)."""
import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

from conftest import ROOT

_spec = importlib.util.spec_from_file_location('docs_build', ROOT / 'docs' / 'build.py')
build_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_docs)

CHROMIUM, DRIVER = shutil.which('chromium') or '/usr/bin/chromium', shutil.which('chromedriver') or '/usr/bin/chromedriver'
HAVE_BROWSER = Path(CHROMIUM).exists() and Path(DRIVER).exists()
META_PAGE = build_docs.page_name(next((ROOT / 'nbs').glob('[0-9]*_meta.ipynb'))) + '.html'  # the page of 09_meta
TYPESET = """const done = arguments[arguments.length - 1];
const wait = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)
  ? MathJax.startup.promise.then(() => document.fonts.ready).then(() => done('ok'), e => done(String(e)))
  : setTimeout(wait, 50);
wait();"""
RAW_TEX = re.compile(r'\$\$?\\?[A-Za-z]|\\[()\[\]]|\\(phi|theta|lambda|nabla|frac|sum|mathrm|hat)\b')
MATH_STATE = """return {math: document.querySelectorAll('.math').length,
  typeset: Array.from(document.querySelectorAll('.math')).filter(e => e.querySelector('mjx-container')).length,
  errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.getAttribute('data-mjx-error')),
  text: (() => { let a = document.querySelector('article'); if (!a) return ''; a = a.cloneNode(true);
                 a.querySelectorAll('pre, code, mjx-container').forEach(e => e.remove()); return a.innerText; })()};"""


def test_readme_is_rendered_from_the_home_page():
    assert (ROOT / 'README.md').read_text() == build_docs.render_readme(), \
        'README.md is out of date with nbs/index.ipynb: run `python docs/build.py --readme`'


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp('published')
    res = build_docs.build(root / 'lwmecps_nb')  # published under a repository path, as GitHub Pages does
    assert not res['warnings'], res['warnings']
    return root, res


def test_every_notebook_is_a_page(site):
    root, res = site
    names = {build_docs.page_name(p) for p in (ROOT / 'nbs').glob('*.ipynb')} | {f'tutorials/{p.stem}' for p in (ROOT / 'nbs' / 'tutorials').glob('*.ipynb')}
    assert names == set(res['pages'])
    for page in res['pages']:
        assert (root / 'lwmecps_nb' / f'{page}.html').exists(), page
    ref = (root / 'lwmecps_nb' / 'widgets.html').read_text()
    assert 'id="trainingpanel"' in ref and 'max_concurrent' in ref  # show_doc with its docments
    assert '<svg' in ref and (root / 'lwmecps_nb' / '.nojekyll').exists()  # the notebook's saved chart outputs


def test_patched_methods_have_their_own_reference(site):
    "A method added with fastcore's `@patch` is documented as `Class.method`, not as nbdev's own show_doc."
    root, _ = site
    meta = (root / 'lwmecps_nb' / 'meta.html').read_text()
    assert 'MetaLearner.meta_step' in meta and 'MetaLearner.adaptation_curve' in meta
    for page in (root / 'lwmecps_nb').glob('*.html'):
        assert 'Show signature and docstring for' not in page.read_text(), page.name


def test_site_sources_are_versioned_and_its_output_is_not():
    "docs/ holds the site's sources (a fresh clone has them); the build output docs/_site/ is ignored."
    import subprocess
    for src in ('docs/build.py', 'docs/conf.py', 'docs/_static/favicon.svg', 'docs/_static/site.css'):
        assert (ROOT / src).exists(), src
        r = subprocess.run(['git', 'check-ignore', '-q', src], cwd=ROOT)
        assert r.returncode == 1, f'{src} is ignored by git'
    assert subprocess.run(['git', 'check-ignore', '-q', 'docs/_site/index.html'], cwd=ROOT).returncode == 0
    with pytest.raises(ValueError): build_docs.build(ROOT / 'docs')  # never replaces the sources


def test_one_command_builds_the_site():
    "The README names the one command that builds the site, and CI runs that command."
    assert '`python docs/build.py`' in (ROOT / 'README.md').read_text()
    assert 'python docs/build.py' in (ROOT / '.ci' / 'run').read_text().splitlines()


def test_math_is_parsed_and_served_locally(site):
    "Dollar math of the notebooks' Markdown becomes Sphinx math, typeset by MathJax from the site's own files."
    root, res = site
    html = (root / 'lwmecps_nb' / META_PAGE).read_text()
    assert html.count('class="math notranslate nohighlight"') >= 5 and '$\\phi' not in html
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert '_static/mathjax/tex-chtml.js' in scripts and not [s for s in scripts if re.match(r'(https?:)?//', s)], scripts
    assert (root / 'lwmecps_nb' / '_static' / 'mathjax' / 'tex-chtml.js').exists()
    assert list((root / 'lwmecps_nb' / '_static' / 'mathjax' / 'output' / 'chtml' / 'fonts').rglob('*.woff'))


def test_links_into_the_site_are_relative_and_private_names_unlinked():
    url = 'https://lwmecps.github.io/lwmecps_nb'
    md = f'[`TaskRunner`]({url}/runner.html#taskrunner), [`_new_task`]({url}/store.html#_new_task), [core](00_core.ipynb)'
    assert build_docs._links(md, url, '../') == '[`TaskRunner`](../runner.ipynb#taskrunner), `_new_task`, [core](core.ipynb)'


def _ids(path: Path) -> set:
    return set(re.findall(r'\bid="([^"]+)"', path.read_text(errors='replace')))


@pytest.mark.skipif(not HAVE_BROWSER and os.environ.get('LWMECPS_REQUIRE_BROWSER') != '1', reason='Chromium and ChromeDriver are not installed')
def test_site_in_chromium(site, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    root, res = site
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f'http://127.0.0.1:{httpd.server_address[1]}/lwmecps_nb/'
    opts = Options(); opts.binary_location = CHROMIUM
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
              '--disable-component-update', '--disable-sync', '--no-first-run', '--window-size=1300,1000', f'--user-data-dir={tmp_path / "chrome"}'):
        opts.add_argument(a)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL', 'performance': 'ALL'})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    pages = sorted(p.relative_to(root / 'lwmecps_nb').as_posix() for p in (root / 'lwmecps_nb').rglob('*.html'))
    broken, empty, errors, ids, foreign, untypeset, requested = [], [], [], {}, [], [], {}
    driver.set_script_timeout(60)
    try:
        for page in pages:
            driver.get(base + page)
            math = driver.execute_script(MATH_STATE)
            if math['math']:  # MathJax typesets after the load event
                assert driver.execute_async_script(TYPESET) == 'ok', page
                math = driver.execute_script(MATH_STATE)
                if math['typeset'] < math['math'] or math['errors']: untypeset.append((page, math))
            raw = RAW_TEX.search(math['text'] or '')  # math the Markdown parser missed stays as TeX in the visible text
            if raw: untypeset.append((page, math['text'][max(raw.start() - 80, 0):raw.end() + 80]))
            text = driver.find_element(By.CSS_SELECTOR, 'article, main, body').text
            if page not in ('genindex.html', 'search.html') and len(text.strip()) < 200: empty.append((page, len(text)))
            errors += [(page, e['message']) for e in driver.get_log('browser') if e['level'] == 'SEVERE']
            requested[page] = [m['params']['request']['url'] for m in (json.loads(e['message'])['message'] for e in driver.get_log('performance'))
                               if m['method'] == 'Network.requestWillBeSent']
            foreign += [(page, u) for u in requested[page] if re.match(r'(https?|wss?|ftp):', u) and not u.startswith(base)]
            for href in driver.execute_script('return Array.from(document.querySelectorAll("a[href]")).map(a => a.href)'):
                if not href.startswith(base): continue
                url, frag = urldefrag(href)
                target = root / 'lwmecps_nb' / unquote(urlparse(url).path[len(urlparse(base).path):] or 'index.html')
                if target.is_dir(): target = target / 'index.html'
                if not target.exists(): broken.append((page, href)); continue
                if frag and target.suffix == '.html' and frag not in ids.setdefault(target, _ids(target)): broken.append((page, href))
            if page == 'index.html':
                out = Path(os.environ.get('LWMECPS_ARTIFACTS', ROOT / 'artifacts')); out.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(out / 'docs-home.png'))
                assert 'lwmecps-nb demo' in text and 'Headline results' in text and 'seeds 0-4' in text
            if page == META_PAGE:  # the formulas of the meta-learning page, typeset, kept as a screenshot
                assert math['math'] >= 5 and math['typeset'] == math['math'] and not math['errors'], math
                assert any('/_static/mathjax/tex-chtml.js' in u for u in requested[page])
                assert any('/_static/mathjax/output/chtml/fonts/' in u for u in requested[page])  # MathJax's fonts, from the site
                driver.execute_script("document.querySelector('article .math').scrollIntoView({block: 'center', behavior: 'instant'})")
                out = Path(os.environ.get('LWMECPS_ARTIFACTS', ROOT / 'artifacts')); out.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(out / 'docs-meta-math.png'))
        driver.get(base + 'search.html?q=TaskRunner')
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, 'ul.search li'))
        assert any('runner' in li.text for li in driver.find_elements(By.CSS_SELECTOR, 'ul.search li'))
    finally:
        driver.quit(); httpd.shutdown()
    assert len(pages) >= len(res['pages']) and META_PAGE in pages
    assert not foreign, foreign[:20]
    assert not untypeset, untypeset[:5]
    assert not broken, broken[:20]
    assert not empty, empty
    assert not errors, errors[:10]
