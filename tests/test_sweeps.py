"""Seeds, meta-batch rollouts and a sweep on a local Ray cluster (`ray start --head` on 127.0.0.1, 2 CPUs).

Skipped when Ray is not installed, unless LWMECPS_REQUIRE_RAY=1 (then a missing Ray fails)."""
import os
from pathlib import Path

import pytest

if os.environ.get('LWMECPS_REQUIRE_RAY') != '1':
    pytest.importorskip('ray')
import ray  # noqa: E402
import torch  # noqa: E402

from lwmecps_nb.bench import run_seeds  # noqa: E402
from lwmecps_nb.distributed import local_ray_cluster, ray_connect  # noqa: E402
from lwmecps_nb.meta_rl import ClusterTaskSource, sample_episodes  # noqa: E402
from lwmecps_nb.sweeps import (SHARE_SEED_STRIDE, ppo_seed_run, ray_map, sample_episodes_sharded,  # noqa: E402
                               sweep)


@pytest.fixture(scope='module')
def ray_cluster(tmp_path_factory):
    if ray.is_initialized(): ray.shutdown()
    saved = {k: os.environ.get(k) for k in ('LWMECPS_HOME', 'WANDB_MODE')}
    os.environ.setdefault('LWMECPS_HOME', str(tmp_path_factory.mktemp('home')))
    os.environ['WANDB_MODE'] = 'offline'  # the cluster's workers inherit both
    try:
        with local_ray_cluster(num_cpus=2) as address:
            ray_connect(address)
            yield address
            ray.shutdown()
    finally:
        for k, v in saved.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v


def test_a_tiny_task_runs_on_the_cluster(ray_cluster):
    assert ray_map(divmod, [(7, 2), (9, 4)]) == [(3, 1), (2, 1)]
    assert ray.cluster_resources().get('CPU') == 2


def test_two_seeds_on_ray_equal_the_process_path(ray_cluster):
    kw = dict(env_config='tiny', total_episodes=6, num_envs=2)
    on_ray = run_seeds(ppo_seed_run, (0, 1), executor='ray', **kw)
    in_processes = run_seeds(ppo_seed_run, (0, 1), workers=2, **kw)
    assert [r['config']['seed'] for r in on_ray] == [0, 1]
    assert [r['returns'] for r in on_ray] == [r['returns'] for r in in_processes]
    assert on_ray[0]['returns'] != on_ray[1]['returns']  # the seeds differ, so equality above is not vacuous


def test_meta_batch_rollouts_on_ray_equal_the_in_process_ones(ray_cluster):
    src = ClusterTaskSource(horizon=12)
    torch.manual_seed(0)
    policy = src.make_model()
    tasks = src.sample(4, seed=3)
    local = sample_episodes_sharded(policy, src, tasks, 3, 12, seed=11, workers=2, executor='local')
    remote = sample_episodes_sharded(policy, src, tasks, 3, 12, seed=11, workers=2, executor='ray')
    for f in ('obs', 'actions', 'rewards', 'log_probs', 'mask'):
        assert torch.equal(getattr(local, f), getattr(remote, f)), f
    # and the shares are `sample_episodes` on their tasks with their seeds
    second = sample_episodes(policy, src, tasks[2:], 3, 12, seed=11 + SHARE_SEED_STRIDE)
    assert torch.equal(remote.rewards[:, 2:], second.rewards)


def test_a_four_trial_ppo_sweep_with_asha(ray_cluster):
    res = sweep('ppo', num_samples=4, scheduler='asha', max_episodes=40, env_config='tiny',
                fixed={'num_envs': 4}, report_every=5, seed=0, time_budget_s=300, wandb=True)
    assert len(res.trials) == 4 and res.table.count('\n') == 5  # header, separator, 4 rows
    assert all(t['error'] is None for t in res.trials)
    assert res.best_config in [t['config'] for t in res.trials]
    assert res.best_return == max(t['return'] for t in res.trials)
    assert all(5 <= t['episodes'] <= 40 for t in res.trials)
    assert {'learning_rate', 'entropy_coef', 'n_steps'} <= set(res.best_config)
    runs = Path(os.environ['LWMECPS_HOME']) / 'wandb' / 'wandb'  # one offline W&B run per trial
    for t in res.trials: assert len(list(runs.glob(f"offline-run-*-training-sweep-{t['trial']}-*"))) == 1, t['trial']


def test_tune_command_prints_the_table_and_the_best_config(ray_cluster, tmp_path):
    "`lwmecps-nb tune` as a user runs it: a 2-trial PPO sweep on the cluster, its table and best config on stdout."
    import subprocess
    from conftest import script
    env = {**os.environ, 'WANDB_MODE': 'offline', 'LWMECPS_HOME': str(tmp_path)}
    r = subprocess.run([script('lwmecps-nb'), 'tune', '--algorithm', 'ppo', '--samples', '2', '--env-config', 'tiny',
                        '--max-episodes', '12', '--scheduler', 'fifo', '--address', ray_cluster], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('\n|') >= 3 and 'best config (return' in r.stdout, r.stdout[-3000:]
