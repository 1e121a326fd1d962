"""CI's house rules: the package is exactly what `nbdev_export` makes of the notebooks, and the notebooks are clean.

Both run on a copy of the repository, so a failing check never rewrites the working tree.
"""
import shutil
import subprocess

from conftest import ROOT, script

IGNORE = shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints', '*.egg-info')


def _copy(tmp_path):
    dst = tmp_path / 'repo'
    dst.mkdir()
    shutil.copy(ROOT / 'settings.ini', dst)
    for d in ('nbs', 'lwmecps_nb'):
        shutil.copytree(ROOT / d, dst / d, ignore=IGNORE)
    return dst


def _tree(path, pattern):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob(pattern)) if '__pycache__' not in p.parts}


def test_export_is_in_sync(tmp_path):
    repo = _copy(tmp_path)
    r = subprocess.run([script('nbdev_export')], cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    before, after = _tree(ROOT / 'lwmecps_nb', '*.py'), _tree(repo / 'lwmecps_nb', '*.py')
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f'nbdev_export would change {changed}: run nbdev_export and commit lwmecps_nb/'


def test_notebooks_are_clean(tmp_path):
    repo = _copy(tmp_path)
    r = subprocess.run([script('nbdev_clean')], cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    before, after = _tree(ROOT / 'nbs', '*.ipynb'), _tree(repo / 'nbs', '*.ipynb')
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert not changed, f'nbdev_clean would change {changed}: run nbdev_clean and commit nbs/'
