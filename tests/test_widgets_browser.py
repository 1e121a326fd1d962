"""The panels rendered in a real browser: a notebook holding the three panels served by Voila on loopback, opened in headless
Chromium (Debian's chromium and chromium-driver), Run clicked in the page, the live update seen there, and a screenshot kept.

The screenshot is written to `$LWMECPS_ARTIFACTS` (default `artifacts/` in the repository) as `widgets-panels.png`.
Without Chromium the test is skipped, unless `LWMECPS_REQUIRE_BROWSER=1` (set by `.ci/run`, which installs it)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, script

CHROMIUM, DRIVER = shutil.which('chromium') or '/usr/bin/chromium', shutil.which('chromedriver') or '/usr/bin/chromedriver'
HAVE_BROWSER = Path(CHROMIUM).exists() and Path(DRIVER).exists()
if not HAVE_BROWSER and os.environ.get('LWMECPS_REQUIRE_BROWSER') != '1':
    pytest.skip('Chromium and ChromeDriver are not installed (apt-get install chromium chromium-driver)', allow_module_level=True)

CELLS = [
    "import os\nos.environ['WANDB_MODE'] = 'disabled'\nfrom lwmecps_nb.tracking import Tracker\nfrom lwmecps_nb.widgets import LocalBackend, MetaLearningPanel, TrainingPanel, TransferPanel\nbe = LocalBackend(tracker=Tracker(mode='disabled'))",
    "train = TrainingPanel(backend=be)\ntrain.env.value, train.episodes.value, train.hyper['num_envs'].value = 'tiny', 24, 4\ntrain",
    "MetaLearningPanel(backend=be)",
    "TransferPanel(backend=be)",
]


def _notebook(path: Path):
    nb = {'cells': [{'cell_type': 'code', 'metadata': {}, 'execution_count': None, 'outputs': [], 'source': c, 'id': f'c{i}'} for i, c in enumerate(CELLS)],
          'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}}, 'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def test_panels_render_and_run_in_chromium(tmp_path):
    assert HAVE_BROWSER, f'LWMECPS_REQUIRE_BROWSER=1 but {CHROMIUM} or {DRIVER} is missing'
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _notebook(tmp_path / 'panels.ipynb')
    port = _free_port()
    env = {**os.environ, 'WANDB_MODE': 'disabled', 'LWMECPS_HOME': str(tmp_path / 'home'), 'JUPYTER_PLATFORM_DIRS': '1'}
    voila = subprocess.Popen([script('voila'), 'panels.ipynb', '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1', '--show_tracebacks=True'],
                             cwd=tmp_path, env=env, stdout=open(tmp_path / 'voila.log', 'wb'), stderr=subprocess.STDOUT)
    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
              '--disable-component-update', '--disable-sync', '--no-first-run', '--window-size=1400,1000', f'--user-data-dir={tmp_path / "chrome"}'):
        opts.add_argument(a)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = None
    try:
        deadline = time.monotonic() + 60
        while True:
            assert voila.poll() is None, (tmp_path / 'voila.log').read_text()[-3000:]
            with socket.socket() as s:
                if s.connect_ex(('127.0.0.1', port)) == 0: break
            assert time.monotonic() < deadline, 'Voila did not listen within 60 s'
            time.sleep(0.2)
        driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
        driver.set_page_load_timeout(120)
        driver.get(f'http://127.0.0.1:{port}/')
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '.widget-button')) >= 6)  # Run and Stop of three panels
        text = driver.find_element(By.TAG_NAME, 'body').text
        for label in ('PPO training', 'Meta-learning', 'Transfer learning', 'learning_rate', 'discount_factor', 'meta_algorithm', 'inner_lr',
                      'outer_lr', 'adaptation_steps', 'meta_batch_size', 'use_implicit_gradients', 'task_distribution', 'transfer_type', 'frozen_layers'):
            assert label in text, f'{label!r} is not on the page'
        run = next(b for b in driver.find_elements(By.CSS_SELECTOR, 'button.widget-button') if b.text.strip() == 'Run')
        run.click()  # the training panel's Run, clicked in the page: the kernel's thread must update the page live
        wait.until(lambda d: 'completed: 24 / 24' in d.find_element(By.TAG_NAME, 'body').text)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, 'svg polyline')) >= 2)  # return and latency curves drawn
        assert 'mean_reward_last_10' in driver.find_element(By.TAG_NAME, 'body').text
        # Voila scrolls an inner container, not the page: the tallest scroll height of any element is the content's
        height = driver.execute_script('return Math.max(...Array.from(document.querySelectorAll("*")).map(e => e.scrollHeight))')
        driver.set_window_size(1400, min(int(height) + 120, 6000))
        time.sleep(0.5)
        out = Path(os.environ.get('LWMECPS_ARTIFACTS', ROOT / 'artifacts'))
        out.mkdir(parents=True, exist_ok=True)
        shot = out / 'widgets-panels.png'
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 50_000, shot.stat().st_size
        errors = [e for e in driver.get_log('browser') if e['level'] == 'SEVERE' and e.get('source') != 'network']
        assert not errors, errors  # no JavaScript errors (a CDN font that cannot load offline is a network entry, not one)
    finally:
        if driver is not None: driver.quit()
        voila.send_signal(signal.SIGINT)
        try: voila.wait(timeout=20)
        except subprocess.TimeoutExpired: voila.kill()
