"""The documentation site: README.md is what nbs/index.ipynb renders to, and the site built offline from the notebooks
reads well in a real browser: every page opened in headless Chromium from a subfolder of a local server, with content,
no JavaScript error, no broken internal link or anchor, and a working search. A screenshot of the home page is kept
(`$LWMECPS_ARTIFACTS`, default `artifacts/`, as `docs-home.png`)."""
import functools
import http.server
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / 'tools'))
import build_docs  # noqa: E402

CHROMIUM, DRIVER = shutil.which('chromium') or '/usr/bin/chromium', shutil.which('chromedriver') or '/usr/bin/chromedriver'
HAVE_BROWSER = Path(CHROMIUM).exists() and Path(DRIVER).exists()


def test_readme_is_rendered_from_the_home_page():
    assert (ROOT / 'README.md').read_text() == build_docs.render_readme(), \
        'README.md is out of date with nbs/index.ipynb: run `python tools/build_docs.py --readme`'


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
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    pages = sorted(p.relative_to(root / 'lwmecps_nb').as_posix() for p in (root / 'lwmecps_nb').rglob('*.html'))
    broken, empty, errors, ids = [], [], [], {}
    try:
        for page in pages:
            driver.get(base + page)
            text = driver.find_element(By.CSS_SELECTOR, 'article, main, body').text
            if page not in ('genindex.html', 'search.html') and len(text.strip()) < 200: empty.append((page, len(text)))
            errors += [(page, e['message']) for e in driver.get_log('browser') if e['level'] == 'SEVERE']
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
        driver.get(base + 'search.html?q=TaskRunner')
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, 'ul.search li'))
        assert any('runner' in li.text for li in driver.find_elements(By.CSS_SELECTOR, 'ul.search li'))
    finally:
        driver.quit(); httpd.shutdown()
    assert len(pages) >= len(res['pages'])
    assert not broken, broken[:20]
    assert not empty, empty
    assert not errors, errors[:10]
