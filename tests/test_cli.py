"The `lwmecps-nb` console script, run as a user runs it: a subprocess."
import json
import subprocess

from conftest import ROOT, script


def run(*args, timeout=600):
    return subprocess.run([script('lwmecps-nb'), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_help_lists_subcommands():
    r = run('--help')
    assert r.returncode == 0
    for cmd in ('demo', 'bench'):
        assert cmd in r.stdout


def test_demo_json_ranks_baselines():
    r = run('demo', '--episodes', '3', '--json')
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    ret = {(x['env'], x['policy']): x['return']['mean'] for x in rows}
    for c in ('cluster-a', 'cluster-b'):
        assert ret[(c, 'hpa-60')] > ret[(c, 'random')] + 20
        assert ret[(c, 'hpa-60')] > ret[(c, 'static-1')] + 20
        assert ret[(c, 'oracle')] >= max(v for (e, _), v in ret.items() if e == c)


def test_demo_table():
    r = run('demo', '--episodes', '2', '--clusters', 'cluster-b')
    assert r.returncode == 0, r.stderr
    assert '| cluster-b | hpa-60 |' in r.stdout and 'cluster-a' not in r.stdout.split('\n', 2)[2]


def test_bench_env_json():
    r = run('bench', 'env', '--json', '--quick')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for k in ('single_env_steps_per_s', 'batched_B1_steps_per_s', 'batched_B64_steps_per_s', 'batched_B1024_steps_per_s'):
        assert res[k] > 0
    assert set(res['ratios_vs_single_env']) == {'B1', 'B64', 'B1024'}
    assert isinstance(res['meets_targets'], bool)


def test_bad_input_is_a_clear_error():
    r = run('demo', '--episodes', '0')
    assert r.returncode == 2 and '--episodes must be at least 1' in r.stderr
    r = run('demo', '--episodes', '1', '--clusters', 'cluster-z')
    assert r.returncode == 2 and "cluster 'cluster-z' is not a preset" in r.stderr
    r = run('bench', 'everything')
    assert r.returncode == 2 and 'invalid choice' in r.stderr
