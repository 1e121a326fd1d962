"What an installed lwmecps_nb must provide beyond its notebooks: metadata pins, package data, registration."
import re
from importlib import metadata, resources

import gymnasium as gym

from conftest import ROOT


def _pins():
    lines = (ROOT / 'constraints.txt').read_text().splitlines()
    return [l.split('#')[0].strip() for l in lines if l.split('#')[0].strip()]


def test_constraints_pin_the_fragile_packages():
    pins = _pins()
    assert {'nbdev==2.4.14', 'execnb<0.2', 'fastcore<2', 'torch==2.13.0', 'kubernetes==37.0.2'} <= set(pins)


def _name(req):
    return re.split(r'[<>=!~ ;\[]', req, maxsplit=1)[0].lower().replace('_', '-')


def _requirements():
    "The installed metadata's requirements: {None: core, extra: [...]}."
    out = {}
    for r in metadata.requires('lwmecps_nb') or []:
        m = re.search(r'extra == "([^"]+)"', r)
        out.setdefault(m.group(1) if m else None, []).append(r.split(';')[0].strip())
    return out


def test_requirements_are_ranges_and_the_extras_exist():
    reqs = _requirements()
    assert {'server', 'k8s', 'tracking', 'widgets', 'bench', 'ray', 'all', 'dev'} <= set(reqs)
    for extra, rs in reqs.items():
        for r in rs: assert '==' not in r, f'{r} ({extra or "core"}): exact pins belong in constraints.txt'
    core = {_name(r): r for r in reqs[None]}
    assert '<2.14' in core['torch'], 'a newer torch from PyPI is a multi-GB CUDA build: keep the upper bound'
    assert 'pydantic' in core and 'pyyaml' in core
    for optional in ('fastapi', 'uvicorn', 'pymongo', 'nx-27017', 'wandb', 'kubernetes', 'ipywidgets', 'stable-baselines3',
                     'prometheus-client', 'ray'):
        assert optional not in core, f'{optional} is an extra, not a core requirement'
    assert {_name(r) for r in reqs['server']} >= {'fastapi', 'uvicorn', 'pymongo', 'nx-27017'}
    assert {_name(r) for r in reqs['k8s']} >= {'kubernetes'} and {_name(r) for r in reqs['tracking']} == {'wandb'}
    assert {_name(r) for r in reqs['bench']} >= {'stable-baselines3', 'torchopt', 'httpx'}
    assert {_name(r) for r in reqs['all']} >= {_name(r) for x in ('server', 'k8s', 'tracking', 'widgets', 'bench')
                                               for r in reqs[x]}
    dev = {_name(r): r for r in reqs['dev']}
    assert 'nbdev' in dev and '<0.2' in dev['execnb'] and '<2' in dev['fastcore']


# the distribution of each imported module, where the names differ (urllib3 comes with the kubernetes client)
_DISTRIBUTION = {'bson': 'pymongo', 'gridfs': 'pymongo', 'yaml': 'pyyaml', 'stable_baselines3': 'stable-baselines3',
                 'urllib3': 'kubernetes', 'prometheus_client': 'prometheus-client'}
# what runs without extras: `pip install -c constraints.txt -e .` then `lwmecps-nb demo`, train, transfer, meta
CORE_MODULES = ('core', 'cluster', 'envs', 'sequential', 'tasks', 'kube', 'policies', 'ppo', 'interop', 'baselines',
                'autoscalers', 'transfer', 'meta', 'meta_rl', 'tracking', 'stats', 'bench', 'cli')


def _imports(path):
    "(module-level imports, every import) of a module, as third-party top-level names."
    import ast, sys
    tree, top, every = ast.parse(path.read_text()), set(), set()
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
        for n in names:
            n = n.split('.')[0]
            if n in sys.stdlib_module_names or n in ('lwmecps_nb', '__future__'): continue
            every.add(n)
            if node in tree.body: top.add(n)
    return top, every


def test_imports_match_the_declared_requirements():
    "Each third-party import is a declared requirement; a core module imports only core ones at import time."
    reqs = _requirements()
    core = {_name(r) for r in reqs[None]}
    declared = core | {_name(r) for rs in reqs.values() for r in rs}
    used = set()
    for p in sorted((ROOT / 'lwmecps_nb').glob('*.py')):
        if p.name == '_modidx.py': continue
        top, every = _imports(p)
        dist = lambda n: _DISTRIBUTION.get(n, n).lower().replace('_', '-')
        used |= {dist(n) for n in every}
        assert {dist(n) for n in every} <= declared, f'{p.name} imports undeclared {sorted({dist(n) for n in every} - declared)}'
        if p.stem in CORE_MODULES:
            assert {dist(n) for n in top} <= core, f'{p.name} needs {sorted({dist(n) for n in top} - core)} to import'
    assert core <= used, f'core requirements nothing imports: {sorted(core - used)}'


def test_the_license_file_matches_the_settings():
    text = (ROOT / 'LICENSE').read_text()
    assert text.lstrip().startswith('Apache License') and 'Version 2.0, January 2004' in text
    assert re.search(r'^license = apache2$', (ROOT / 'settings.ini').read_text(), re.M)
    meta = metadata.metadata('lwmecps_nb')
    assert 'Apache-2.0' in (meta['License-Expression'] or meta['License'] or ''), 'the installed metadata names the license'


def test_hcpp_traces_ship_with_the_package():
    data = resources.files('lwmecps_nb') / 'data' / 'hcpp'
    for p in ('profile_a_24h.csv', 'profile_b_24h.csv'):
        text = (data / p).read_text()
        assert text.startswith('t_s,bs_1,bs_2,bs_3,bs_4') and len(text.splitlines()) == 8641


def test_import_registers_the_environments():
    import lwmecps_nb  # noqa: F401
    assert 'lwmecps_nb/KubeMEC-v0' in gym.registry and 'lwmecps-v3' in gym.registry
    env = gym.make('lwmecps_nb/KubeMEC-v0')
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_a_lower_module_never_imports_a_higher_one():
    "ARCHITECTURE.md: the notebooks' numbers order the modules; imports (function-level ones included) only point down."
    import ast
    from conftest import ROOT
    import json
    order = {}
    for nb in (ROOT / 'nbs').glob('[0-9][0-9]*_*.ipynb'):  # 03a_kube_testing comes after 03_kube
        for cell in json.loads(nb.read_text())['cells']:
            for line in ''.join(cell['source']).splitlines():
                if line.startswith('#| default_exp'): order[line.split()[-1]] = (int(nb.name[:2]), nb.name[2:nb.name.index('_')])
    assert {'core', 'meta_rl', 'store', 'runner', 'distributed', 'api', 'cli', 'control'} <= set(order)
    assert order['runner'] < order['distributed'] < order['api']  # 13a: runner's tasks on Ray; api imports it lazily
    for mod, rank in order.items():
        tree = ast.parse((ROOT / 'lwmecps_nb' / f'{mod}.py').read_text())
        for node in ast.walk(tree):
            names = [('lwmecps_nb.' if node.level else '') + node.module] if isinstance(node, ast.ImportFrom) and node.module else [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for n in names:
                if n.startswith('lwmecps_nb.'):
                    dep = n.split('.')[1]
                    assert order.get(dep, (-1, '')) <= rank, f'{mod} {rank} imports {dep} {order.get(dep)}, a higher module'
