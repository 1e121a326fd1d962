"""Every notebook runs as a test, one pytest case each (nbdev_test in a subprocess, as CI and developers run it).

Cells flagged `#| slow` (the tst_flags in settings.ini) are skipped here; `nbdev_test --flags slow` runs them.
"""
import subprocess

import pytest

from conftest import ROOT, script

NOTEBOOKS = sorted(p for p in (ROOT / 'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts and not p.name.startswith('_'))


def test_there_are_notebooks():
    names = {p.stem for p in NOTEBOOKS}
    assert {'00_core', '01_cluster', '02_envs', '04_tasks', '07_baselines', '16_bench', '17_cli'} <= names


@pytest.mark.parametrize('notebook', NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / 'nbs')))
def test_notebook(notebook):
    r = subprocess.run([script('nbdev_test'), '--path', str(notebook)], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f'{notebook.name} failed:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}'
