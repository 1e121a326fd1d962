"""The package without extras, in a fresh virtual environment: what `pip install -c constraints.txt -e .` gives a user.

The core (simulator, environments, PPO, transfer, meta-learning, the command line and its demo) must import and run
with the core requirements alone; a command that needs an extra says which one to install.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

EXTRAS_ONLY = ('fastapi', 'uvicorn', 'pymongo', 'nx-27017', 'wandb', 'kubernetes', 'ipywidgets', 'stable-baselines3',
               'torchopt', 'httpx', 'ray', 'prometheus-client', 'nbdev')

CORE_RUN = """
import numpy as np, torch
from lwmecps_nb.ppo import PPOConfig, train_ppo
from lwmecps_nb.transfer import TransferConfig, transfer_learn
from lwmecps_nb.meta import MetaLearner, SinusoidTasks, sinusoid_model
from lwmecps_nb.meta_rl import ClusterTaskSource, default_rollout, meta_train_rl
from lwmecps_nb.baselines import baseline_policies
from lwmecps_nb.autoscalers import KubernetesHPA
import lwmecps_nb.sequential, lwmecps_nb.kube, lwmecps_nb.tracking, lwmecps_nb.bench, lwmecps_nb.cli
src = train_ppo('tiny', PPOConfig(total_episodes=4, num_envs=2, n_steps=24), progress=False)
tr = transfer_learn(src.model, 'tiny', TransferConfig(total_episodes=2, num_envs=2), progress=False)
learner = MetaLearner(sinusoid_model(), 'maml', inner_lr=0.01, meta_batch_size=2)
loss = learner.meta_step(SinusoidTasks(seed=0)(2))
source = ClusterTaskSource()
res = meta_train_rl(source, 'fomaml', iterations=1, meta_batch_size=1, progress=False,
                    cfg=default_rollout(source, trajectories=2, horizon=12))
print('core ok', len(src.history['episodes']), len(res.history))
"""


@pytest.fixture(scope='module')
def bare(tmp_path_factory):
    "A fresh venv with only `pip install -c constraints.txt <the package>`."
    tmp = tmp_path_factory.mktemp('bare')
    src = tmp / 'src'
    src.mkdir()
    for f in ('setup.py', 'settings.ini', 'constraints.txt', 'README.md', 'LICENSE', 'MANIFEST.in'):
        shutil.copy(ROOT / f, src / f)
    shutil.copytree(ROOT / 'lwmecps_nb', src / 'lwmecps_nb', ignore=shutil.ignore_patterns('__pycache__'))
    venv = tmp / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True, timeout=120)
    r = subprocess.run([str(venv / 'bin' / 'python'), '-m', 'pip', 'install', '-q', '-c', str(ROOT / 'constraints.txt'),
                        str(src)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return venv, tmp


def _env(tmp):
    env = {k: v for k, v in os.environ.items() if not k.startswith(('VIRTUAL_ENV', 'PYTHONPATH'))}
    # one torch thread: on a busy machine two intra-op threads contend and PPO's small batches get many times slower
    return {**env, 'WANDB_MODE': 'offline', 'LWMECPS_HOME': str(tmp / 'home'), 'MPLBACKEND': 'Agg', 'OMP_NUM_THREADS': '1'}


def test_only_the_core_requirements_are_installed(bare):
    venv, _ = bare
    r = subprocess.run([str(venv / 'bin' / 'python'), '-m', 'pip', 'list', '--format=json'], capture_output=True,
                       text=True, timeout=120)
    names = {p['name'].lower().replace('_', '-') for p in json.loads(r.stdout)}
    assert {'torch', 'numpy', 'gymnasium', 'higher', 'pydantic', 'pyyaml', 'lwmecps-nb'} <= names
    assert not names & set(EXTRAS_ONLY), f'extras leaked into the core install: {sorted(names & set(EXTRAS_ONLY))}'


def test_the_core_learners_import_and_run_without_extras(bare):
    venv, tmp = bare
    r = subprocess.run([str(venv / 'bin' / 'python'), '-c', CORE_RUN], capture_output=True, text=True, timeout=600,
                       cwd=tmp, env=_env(tmp))
    assert r.returncode == 0 and 'core ok 4 1' in r.stdout, r.stderr[-4000:]


def test_the_command_line_trains_and_demos_without_extras(bare):
    venv, tmp = bare
    cli, env = str(venv / 'bin' / 'lwmecps-nb'), _env(tmp)
    r = subprocess.run([cli, 'train', '--env-config', 'tiny', '--episodes', '4', '--out', str(tmp / 'm.pt'), '--json'],
                       capture_output=True, text=True, timeout=600, cwd=tmp, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)['episodes'] == 4, r.stderr[-4000:]
    r = subprocess.run([cli, 'demo', '--quick'], capture_output=True, text=True, timeout=900, cwd=tmp, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (tmp / 'lwmecps-demo-report.html').stat().st_size > 10_000


@pytest.mark.parametrize('argv, extra', [(['serve', '--port', '0'], 'server'), (['db', 'status'], 'server')])
def test_a_command_that_needs_an_extra_names_it(bare, argv, extra):
    venv, tmp = bare
    r = subprocess.run([str(venv / 'bin' / 'lwmecps-nb'), *argv], capture_output=True, text=True, timeout=120, cwd=tmp,
                       env=_env(tmp))
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    assert f'pip install "lwmecps_nb[{extra}]"' in r.stderr, r.stderr
