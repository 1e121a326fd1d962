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
    assert 'nbdev==2.4.14' in pins and 'execnb<0.2' in pins and 'fastcore<2' in pins and 'torch==2.13.0' in pins


def test_installed_requirements_carry_the_pins():
    reqs = metadata.requires('lwmecps_nb') or []
    by_name = {re.split(r'[<>=!~ ;\[]', r, maxsplit=1)[0].lower(): r for r in reqs}
    assert '<2' in by_name['fastcore']
    torch_reqs = [r for r in reqs if re.split(r'[<>=!~ ;\[]', r, maxsplit=1)[0].lower() == 'torch']
    assert torch_reqs, 'torch must be a requirement'
    for r in torch_reqs:
        assert '==2.13.0' in r, f'torch must be pinned exactly, got {r}'
    dev = [r for r in reqs if 'extra == "dev"' in r]
    assert any(r.startswith('nbdev') and '==2.4.14' in r for r in dev)
    assert any(r.startswith('execnb') and '<0.2' in r for r in dev)


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
