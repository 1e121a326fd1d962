"""The layout rules of ARCHITECTURE.md, checked on the exported package and on the notebooks
(that a lower module never imports a higher one is checked in test_package.py).

- benchmarks and experiments live in `bench`, not in the library modules they measure;
- no line of the package is over 120 characters, and no export cell is over 80 lines.
"""
import ast
import json
import re

import pytest

from conftest import ROOT

PKG = ROOT / 'lwmecps_nb'
NBS = ROOT / 'nbs'
MAX_LINE, MAX_EXPORT_CELL = 120, 80


def _exported_notebooks() -> dict:
    "module name -> notebook path, from each notebook's `#| default_exp`."
    out = {}
    for nb in sorted(NBS.glob('*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        for c in cells:
            m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M)
            if m: out[m.group(1)] = nb; break
    return out


MODULES = _exported_notebooks()


BENCHMARKS = ('sinusoid_benchmark', 'bench_meta_overhead', 'seed_claim_check', 'cluster_meta_benchmark',
              'navigation_benchmark', 'run_seeds', 'bench_api', 'compare_with_sb3', 'run_demo', 'demo_report')


def test_benchmarks_live_in_bench():
    bench = {n.name for n in ast.parse((PKG / 'bench.py').read_text()).body if isinstance(n, ast.FunctionDef)}
    assert set(BENCHMARKS) <= bench, set(BENCHMARKS) - bench
    for module in set(MODULES) - {'bench'}:
        defined = {n.name for n in ast.parse((PKG / f'{module}.py').read_text()).body
                   if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert not defined & set(BENCHMARKS), f'{module} defines benchmarks {defined & set(BENCHMARKS)}'
    assert {'mean_ci', 't_quantile_975'} <= {n.name for n in ast.parse((PKG / 'stats.py').read_text()).body
                                              if isinstance(n, ast.FunctionDef)}


def _long_lines(path):
    lines = path.read_text().splitlines()
    # nbdev writes `__all__ = ` and then its own list wrapped at 120 characters: its first line can reach 130
    return [(i + 1, len(l)) for i, l in enumerate(lines) if len(l) > MAX_LINE and not l.startswith('__all__ = [')]


@pytest.mark.parametrize('module', sorted(MODULES))
def test_no_line_over_120_characters(module):
    assert not _long_lines(PKG / f'{module}.py'), f'{module}.py: (line, length) {_long_lines(PKG / f"{module}.py")}'


@pytest.mark.parametrize('module', sorted(MODULES))
def test_export_cells_are_short(module):
    cells = json.loads(MODULES[module].read_text())['cells']
    sizes = [len(''.join(c['source']).splitlines()) for c in cells
             if c['cell_type'] == 'code' and re.match(r'\s*#\|\s*exports?\b', ''.join(c['source']))]
    assert max(sizes, default=0) <= MAX_EXPORT_CELL, f'{MODULES[module].name}: export cells of {sorted(sizes)[-3:]} lines'
