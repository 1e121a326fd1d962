"The `lwmecps-nb` console script, run as a user runs it: a subprocess."
import json
import math
import subprocess

import pytest

from conftest import ROOT, script


def run(*args, timeout=600):
    return subprocess.run([script('lwmecps-nb'), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_help_lists_subcommands():
    r = run('--help')
    assert r.returncode == 0
    for cmd in ('demo', 'train', 'evaluate', 'transfer', 'meta', 'adapt', 'bench', 'serve', 'db', 'control'):
        assert cmd in r.stdout
    assert '--verbose' in r.stdout and 'Transfer learning progress' in r.stdout  # what -v shows


def test_serve_help_names_the_security_options():
    r = run('serve', '--help')
    assert r.returncode == 0
    for option in ('--host', '--token-file', '--insecure', '--max-queued', 'LWMECPS_API_TOKEN_FILE', '127.0.0.1'):
        assert option in r.stdout, option


def test_control_is_listed_and_runs_or_says_why_not():
    import importlib.util
    if importlib.util.find_spec('lwmecps_nb.control') is None:  # the controller's module is not installed (yet)
        r = run('control')
        assert r.returncode == 2 and 'the control command is unavailable' in r.stderr, r.stderr
    else:
        r = run('control', '--help')
        assert r.returncode == 0 and 'usage: lwmecps-nb control' in r.stdout, r.stderr


def test_each_bench_target_has_its_own_parser():
    r = run('bench', '--help')
    assert r.returncode == 0
    for target in ('env', 'ppo', 'meta', 'meta-rl', 'compare', 'api'):
        assert target in r.stdout
    own = {'env': '--seconds', 'ppo': '--eval-episodes', 'meta': '--iterations', 'meta-rl': '--warm-start-fraction',
           'compare': '--workers', 'api': '--clients'}
    for target, option in own.items():
        h = run('bench', target, '--help')
        assert h.returncode == 0 and option in h.stdout, (target, h.stdout)
        assert all(o not in h.stdout for t, o in own.items() if o != option and t not in (target, 'meta')), (target, h.stdout)
    r = run('bench', 'env', '--clients', '3')
    assert r.returncode == 2 and 'unrecognized arguments: --clients 3' in r.stderr


TINY_META = ('meta', '--iterations', '2', '--meta-batch-size', '2', '--trajectories', '2', '--held-out', '1', '--test-steps', '1',
             '--eval-episodes', '1', '--json')


def test_verbose_shows_the_progress_lines_the_default_hides(tmp_path):
    import re
    progress = re.compile(r'meta-episode \d+: loss=')
    quiet = run(*TINY_META, '--out', str(tmp_path / 'a.pt'))
    assert quiet.returncode == 0, quiet.stderr
    assert not progress.search(quiet.stderr), quiet.stderr
    for argv in (('-v', *TINY_META), (*TINY_META, '--verbose')):  # before or after the subcommand
        loud = run(*argv, '--out', str(tmp_path / 'b.pt'))
        assert loud.returncode == 0, loud.stderr
        assert len(progress.findall(loud.stderr)) == 2, loud.stderr  # one line per meta-iteration
    r = run('-v', *TINY_META, '-q')
    assert r.returncode == 2 and 'contradict' in r.stderr


def test_baselines_json_ranks_baselines():
    r = run('baselines', '--episodes', '3', '--json')
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    ret = {(x['env'], x['policy']): x['return']['mean'] for x in rows}
    for c in ('cluster-a', 'cluster-b'):
        assert ret[(c, 'hpa-60')] > ret[(c, 'random')] + 20
        assert ret[(c, 'hpa-60')] > ret[(c, 'static-1')] + 20
        assert ret[(c, 'oracle')] >= max(v for (e, _), v in ret.items() if e == c)


def test_baselines_table():
    r = run('baselines', '--episodes', '2', '--clusters', 'cluster-b')
    assert r.returncode == 0, r.stderr
    assert '| cluster-b | hpa-60 |' in r.stdout and 'cluster-a' not in r.stdout.split('\n', 2)[2]


def test_demo_quick_writes_tables_and_report(tmp_path):
    report = tmp_path / 'report.html'
    r = run('demo', '--quick', '--json', '--report', str(report))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert set(out['tables']) == {'baselines', 'ppo', 'transfer_metrics', 'transfer_eval', 'meta', 'meta_reference'}
    assert out['budget']['ppo_episodes'] == 1000 and len(out['meta']['curve'][0]) == 6  # after 0..5 steps
    assert '[3/5] transfer to cluster-b' in r.stderr  # the step headings go to stderr with --json
    html = report.read_text()
    assert html.count('<svg') == 4 and 'FOMAML' in html


def test_bench_env_json():
    r = run('bench', 'env', '--json', '--quick')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for k in ('single_env_steps_per_s', 'batched_B1_steps_per_s', 'batched_B64_steps_per_s', 'batched_B1024_steps_per_s',
              'sequential_B1_steps_per_s', 'sequential_B1024_steps_per_s'):
        assert res[k] > 0
    assert set(res['ratios_vs_single_env']) == {'B1', 'B64', 'B1024'}
    assert isinstance(res['meets_targets'], bool)


def test_bad_input_is_a_clear_error():
    r = run('baselines', '--episodes', '0')
    assert r.returncode == 2 and '--episodes must be at least 1' in r.stderr
    r = run('baselines', '--episodes', '1', '--clusters', 'cluster-z')
    assert r.returncode == 2 and "cluster 'cluster-z' is not a preset" in r.stderr
    r = run('bench', 'everything')
    assert r.returncode == 2 and 'invalid choice' in r.stderr


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp('models') / 'tiny.pt'
    r = run('train', '--env-config', 'tiny', '--episodes', '160', '--seed', '0', '--out', str(out), '--eval-episodes', '4', '--json')
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


def test_train_saves_a_model_that_beats_random(tiny_model):
    out, res = tiny_model
    assert out.exists() and res['model'] == str(out)
    ev = res['evaluation']
    assert ev['ppo']['return']['mean'] > ev['random']['return']['mean'] + 20
    from lwmecps_nb.ppo import load_model
    ckpt = load_model(out).checkpoint
    assert ckpt['hyperparameters']['total_episodes'] == 160 and ckpt['env_spec']['name'] == 'tiny'
    assert ckpt['metrics']['evaluation']['ppo']['return']['mean'] == ev['ppo']['return']['mean']


def test_train_rejects_bad_hyperparameters(tmp_path):
    r = run('train', '--env-config', 'tiny', '--episodes', '2', '--learning-rate', '-1', '--out', str(tmp_path / 'x.pt'))
    assert r.returncode == 2 and 'learning_rate' in r.stderr and '-1' in r.stderr, r.stderr  # names the field and the value
    r = run('train', '--env-config', 'tiny', '--episodes', '2', '--config', '{"lr": 0.1}', '--out', str(tmp_path / 'x.pt'))
    assert r.returncode == 2 and "unknown PPO hyperparameter(s) ['lr']" in r.stderr
    assert not (tmp_path / 'x.pt').exists()


def test_bench_ppo_reports_both_ratios():
    r = run('bench', 'ppo', '--env-config', 'tiny', '--episodes', '32', '--eval-episodes', '2', '--json')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res['env_steps'] == 32 * 96
    assert res['speedup_vs_sb3'] > 0 and isinstance(res['return_difference_vs_sb3'], float)
    assert res['ours']['wall_time_s'] > 0 and res['sb3']['wall_time_s'] > 0


BUSIER_TINY = json.dumps({'spec': {'nodes': [{'name': 'edge', 'cpu': 2, 'memory_mb': 4096}, {'name': 'cloud', 'cpu': 4, 'memory_mb': 8192}],
                                   'stations': ['bs1', 'bs2'], 'latency_ms': [[5, 60], [25, 60]], 'max_pods': 3,
                                   'load': {'pattern': 'diurnal', 'level': 20}, 'name': 'tiny-busier'}})


def test_transfer_measures_against_scratch(tiny_model, tmp_path):
    src, _ = tiny_model
    out = tmp_path / 'adapted.pt'
    r = run('transfer', '--source', str(src), '--env-config', BUSIER_TINY, '--transfer-type', 'feature_extraction',
            '--episodes', '24', '--num-envs', '8', '--out', str(out), '--eval-episodes', '4', '--json')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    m = res['metrics']
    assert m['frozen_at_start'] == [0, 1] and m['jumpstart'] > 0 and m['transfer_metric'] > 1
    per_layer = m['parameter_distance']['per_layer']
    assert per_layer[0]['distance'] == 0 and per_layer[1]['distance'] == 0 and per_layer[2]['distance'] > 0
    assert out.exists()


def test_transfer_verbose_logs_its_progress(tiny_model, tmp_path):
    src, _ = tiny_model
    argv = ('transfer', '--source', str(src), '--env-config', 'tiny', '--episodes', '4', '--num-envs', '2', '--eval-episodes', '1', '--json')
    loud, quiet = run(*argv, '--verbose'), run(*argv)
    assert loud.returncode == 0 and quiet.returncode == 0, (loud.stderr, quiet.stderr)
    assert 'Transfer learning progress: 100.00%' in loud.stderr and 'Transfer learning progress' not in quiet.stderr


def test_transfer_errors_name_the_cause(tiny_model, tmp_path):
    src, _ = tiny_model
    r = run('transfer', '--source', str(tmp_path / 'missing.pt'), '--env-config', 'tiny', '--episodes', '4')
    assert r.returncode == 2 and f'Model file not found: {tmp_path / "missing.pt"}' in r.stderr
    r = run('transfer', '--source', str(src), '--env-config', 'cluster-b', '--episodes', '4')
    assert r.returncode == 2 and 'incompatible with the environment' in r.stderr
    r = run('transfer', '--source', str(src), '--env-config', 'tiny', '--frozen-layers', '0,7', '--episodes', '4')
    assert r.returncode == 2 and 'frozen_layers [7] out of range' in r.stderr


def test_bench_meta_quick_reports_ratios_and_curves():
    r = run('bench', 'meta', '--quick', '--iterations', '20', '--json')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    ratios = res['overhead']['ratios']
    assert {'ours_maml / plain_higher_maml', 'ours_fomaml / plain_first_order', 'ours_maml / ours_fomaml'} <= set(ratios)
    methods = res['sinusoid']['methods']
    assert set(methods) == {'maml', 'fomaml', 'implicit_fomaml', 'pretrained'}
    assert all(len(m['mse_after_steps']) == 11 for m in methods.values())


def test_meta_then_adapt(tmp_path):
    out = tmp_path / 'meta.pt'
    r = run('meta', '--iterations', '3', '--meta-batch-size', '2', '--trajectories', '4', '--held-out', '2', '--test-steps', '2',
            '--eval-episodes', '1', '--out', str(out), '--json')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert out.is_file() and res['config']['algorithm'] == 'fomaml' and res['config']['iterations'] == 3
    assert len(res['table']['meta_learned']) == 3 and len(res['table']['untrained_init']) == 3
    assert {'meta_loss', 'gradient_norm', 'pre_adaptation_return', 'post_adaptation_return'} <= set(res['final_metrics'])
    adapted = tmp_path / 'adapted.pt'
    r = run('adapt', '--model', str(out), '--env-config', 'cluster-b', '--steps', '1', '--repeats', '2', '--trajectories', '4',
            '--eval-episodes', '1', '--out', str(adapted), '--json')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res['inner_lr'] == 0.5 and len(res['returns_after_steps']) == 2 and adapted.is_file()
    r = run('adapt', '--model', str(tmp_path / 'missing.pt'))
    assert r.returncode == 2 and 'Model file not found' in r.stderr
    r = run('meta', '--iterations', '0')
    assert r.returncode == 2 and '--iterations must be at least 1' in r.stderr
    r = run('meta', '--inner-lr', '-1', '--iterations', '1')
    assert r.returncode == 2 and 'inner_lr must be positive' in r.stderr


def test_bench_meta_rl_quick_reports_every_method():
    r = run('bench', 'meta-rl', '--quick', '--json')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    algos = {'maml', 'fomaml', 'implicit_fomaml'}
    assert set(res['returns_after_steps']) == {'untrained', 'multitask_ppo'} | algos | {f'{a}_from_ppo' for a in algos}
    # the warm-started runs spend the multi-task PPO budget: the fork's episodes plus their own meta-batches
    warm = res['config']['warm_start']
    assert res['budgets_episodes']['fomaml_from_ppo'] == warm['fork_episodes'] + warm['meta_batches'] * res['config']['meta_batch_size'] * res['config']['trajectories'] * 2
    assert 'fomaml_from_ppo beats multi-task PPO after 2 steps' in res['targets']
    assert set(res['per_iteration']) == {'maml', 'fomaml', 'implicit_fomaml'}
    # second order keeps the inner graph: more memory saved for backward than first order
    assert res['per_iteration']['maml']['peak_saved_bytes'] > res['per_iteration']['fomaml']['peak_saved_bytes']
    assert {'scratch', 'hpa', 'random'} == set(res['references'])


def test_bench_compare_quick_measures_every_learner_on_one_budget():
    r = run('bench', 'compare', '--quick', '--json', timeout=900)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert set(res['rows']) == {'transfer', 'maml', 'fomaml', 'implicit_fomaml'} and 'hidden_dynamics' in res['task_family']
    budgets = {row['budget_episodes'] for row in res['rows'].values()}
    assert len(budgets) == 1  # every learner trains on the same number of episodes
    for name, row in res['rows'].items():
        assert len(row['curve']) == res['budget']['test_steps'] + 1 and math.isfinite(row['adaptation_accuracy'][0]), name  # NaN: an empty or zero gap
    # second order keeps the inner graph: more memory saved for backward than first order
    assert res['rows']['maml']['per_iteration']['peak_saved_bytes'] > res['rows']['fomaml']['per_iteration']['peak_saved_bytes']
    assert res['claims']['implicit_fomaml'] == ['medium', 'very high', 'medium']


def test_db_command_starts_reports_and_stops_the_embedded_server(tmp_path):
    import os
    env = {**os.environ, 'LWMECPS_HOME': str(tmp_path)}
    env.pop('MONGODB_URL', None)
    db = lambda action: subprocess.run([script('lwmecps-nb'), 'db', action], capture_output=True, text=True, timeout=120, env=env)
    assert 'not running' in db('status').stdout
    started = db('start')
    assert started.returncode == 0 and started.stdout.startswith('mongodb://127.0.0.1:'), started.stderr
    assert f"running at {started.stdout.strip()}" in db('status').stdout
    assert db('stop').stdout.strip() == 'stopped'
    assert 'not running' in db('status').stdout and db('stop').stdout.strip() == 'not running'


def test_train_logs_one_wandb_run_through_the_tracking_module(tmp_path):
    import os
    env = {**os.environ, 'LWMECPS_HOME': str(tmp_path), 'WANDB_MODE': 'offline', 'WANDB_DATA_DIR': str(tmp_path / 'wandb-data')}  # W&B stages artifacts there
    r = subprocess.run([script('lwmecps-nb'), 'train', '--env-config', 'tiny', '--episodes', '4', '--num-envs', '2', '--eval-episodes', '1',
                        '--out', str(tmp_path / 'm.pt'), '--json', '--wandb', 'on'], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    runs = sorted((tmp_path / 'wandb' / 'wandb').glob('offline-run-*-training-cli-*'))
    assert len(runs) == 1 and any(runs[0].rglob('*.wandb'))
    r = subprocess.run([script('lwmecps-nb'), 'train', '--env-config', 'tiny', '--episodes', '2', '--num-envs', '2', '--eval-episodes', '1',
                        '--out', str(tmp_path / 'm2.pt'), '--json'], capture_output=True, text=True, timeout=300, env={**env, 'WANDB_API_KEY': ''})
    assert r.returncode == 0 and len(list((tmp_path / 'wandb' / 'wandb').glob('offline-run-*'))) == 1  # auto without a key: no run


def test_bench_api_quick_measures_latency_and_overhead():
    r = run('bench', 'api', '--quick', '--json', timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res['errors'] == [] and res['latency_ms']['create']['n'] == 12 and res['latency_ms']['get']['p50'] > 0
    assert res['training']['direct_s'] > 0 and res['training']['through_server_s'] > 0 and 'overhead' in res['training']


def test_evaluate_prints_the_model_against_the_baselines(tiny_model, tmp_path):
    model, trained = tiny_model
    r = run('evaluate', '--model', str(model), '--episodes', '4', '--json')  # the episodes train evaluated on (seed 1000)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert (res['env'], res['env_from'], res['model_type'], res['seed']) == ('tiny', 'checkpoint', 'ppo', 1000)
    assert list(res['evaluation']) == ['ppo', 'random', 'static-1', 'static-3', 'hpa-60', 'greedy-60', 'oracle']
    for policy, metrics in trained['evaluation'].items():  # one evaluation, shared with train: the same numbers
        for k, v in metrics.items():
            assert res['evaluation'][policy][k]['mean'] == pytest.approx(v['mean'], rel=1e-9, abs=1e-9), (policy, k)
    r = run('evaluate', '--model', str(model), '--episodes', '2', '--seed', '7')
    assert r.returncode == 0, r.stderr
    assert 'on tiny, the environment the model was trained on (from its checkpoint)' in r.stdout
    assert 'Greedy evaluation, 2 episodes, seeds 7..8; mean ± 95% CI.' in r.stdout
    assert '| tiny | ppo |' in r.stdout and '| tiny | hpa-60 |' in r.stdout and '| tiny | oracle |' in r.stdout


def test_evaluate_on_kubemec_v1_uses_the_v1_baselines(tmp_path):
    v1 = json.dumps({'cluster': 'tiny', 'env_id': 'lwmecps_nb/KubeMEC-v1', 'max_episode_steps': 60})
    out = tmp_path / 'v1.pt'
    r = run('train', '--env-config', v1, '--episodes', '2', '--num-envs', '2', '--n-steps', '60', '--eval-episodes', '2', '--out', str(out), '--json')
    assert r.returncode == 0, r.stderr
    trained = json.loads(r.stdout)
    r = run('evaluate', '--model', str(out), '--episodes', '2', '--json')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res['env'] == 'tiny v1 @60s'  # the model acts every minute, as trained; the HPA syncs every 15 s
    assert list(res['evaluation']) == ['ppo', 'k8s-hpa-60', 'holt-60', 'greedy-observed-60', 'greedy-observed-60-incr', 'static-4', 'mpc-oracle']
    assert list(trained['evaluation']) == list(res['evaluation'])
    for policy, metrics in trained['evaluation'].items():
        assert res['evaluation'][policy]['return']['mean'] == pytest.approx(metrics['return']['mean'], rel=1e-9, abs=1e-9), policy

def test_evaluate_errors_name_the_option(tiny_model, tmp_path):
    model, _ = tiny_model
    r = run('evaluate', '--model', str(model), '--env-config', 'cluster-b', '--episodes', '2')
    assert r.returncode == 2 and r.stderr.startswith(f'lwmecps-nb: error: --env-config: model {model} is incompatible with the environment'), r.stderr
    assert 'without --env-config it runs where it was trained' in r.stderr and r.stdout == ''
    r = run('evaluate', '--model', str(tmp_path / 'missing.pt'))
    assert r.returncode == 2 and f'--model: Model file not found: {tmp_path / "missing.pt"}' in r.stderr
    (tmp_path / 'notes.pt').write_text('not a model')
    r = run('evaluate', '--model', str(tmp_path / 'notes.pt'))
    assert r.returncode == 2 and '--model: ' in r.stderr and 'is not a lwmecps_nb model file' in r.stderr
    r = run('evaluate', '--model', str(model), '--episodes', '0')
    assert r.returncode == 2 and '--episodes must be at least 1' in r.stderr


def test_train_takes_its_hyperparameters_from_a_yaml_file(tmp_path):
    cfg = tmp_path / 'ppo.yaml'
    cfg.write_text('# PPO\nlearning_rate: 0.0007\nn_steps: 48\nn_epochs: 3\ntotal_episodes: 50\n')
    out = tmp_path / 'm.pt'
    r = run('train', '--env-config', 'tiny', '--config', str(cfg), '--episodes', '4', '--num-envs', '2', '--n-epochs', '2',
            '--eval-episodes', '1', '--out', str(out), '--json')
    assert r.returncode == 0, r.stderr
    from lwmecps_nb.ppo import load_model
    hp = load_model(out).checkpoint['hyperparameters']
    assert (hp['learning_rate'], hp['n_steps'], hp['n_epochs'], hp['total_episodes'], hp['num_envs']) == (0.0007, 48, 2, 4, 2)  # flags win
    cfg.write_text('learning_rate: 0.0007\nlr: 0.1\n')
    r = run('train', '--env-config', 'tiny', '--config', str(cfg), '--episodes', '2', '--out', str(tmp_path / 'x.pt'))
    assert r.returncode == 2 and f"lwmecps-nb: error: --config {cfg}: unknown PPO hyperparameter(s) ['lr']" in r.stderr, r.stderr
    cfg.write_text('- learning_rate: 0.0007\n')
    r = run('train', '--env-config', 'tiny', '--config', str(cfg), '--episodes', '2', '--out', str(tmp_path / 'x.pt'))
    assert r.returncode == 2 and f'--config {cfg}: the top level must be a mapping of setting names to values, got a list' in r.stderr
    assert not (tmp_path / 'x.pt').exists()
    bad = tmp_path / 'meta.yml'
    bad.write_text('meta_algorithm: fomaml\nalgorithm: maml\n')
    r = run('meta', '--config', str(bad), '--iterations', '1')
    assert r.returncode == 2 and f"--config {bad}: unknown meta setting(s) ['algorithm']" in r.stderr, r.stderr


EXAMPLES = ROOT / 'examples'


def test_the_example_configs_run_through_the_cli(tiny_model, tmp_path):
    "Each example YAML file through its command, at tiny budgets given as flags (flags win), so that none can rot."
    assert sorted(p.name for p in EXAMPLES.glob('*.yaml')) == ['meta-fomaml.yaml', 'ppo-cluster-a.yaml', 'transfer-fine-tuning.yaml']
    from lwmecps_nb.ppo import load_model
    import yaml
    r = run('train', '--env-config', 'tiny', '--config', str(EXAMPLES / 'ppo-cluster-a.yaml'), '--episodes', '4', '--num-envs', '2',
            '--eval-episodes', '1', '--out', str(tmp_path / 'ppo.pt'), '--json')
    assert r.returncode == 0, r.stderr
    hp = load_model(tmp_path / 'ppo.pt').checkpoint['hyperparameters']
    example = yaml.safe_load((EXAMPLES / 'ppo-cluster-a.yaml').read_text())
    assert hp['total_episodes'] == 4 and hp['learning_rate'] == example['learning_rate'] and hp['n_epochs'] == example['n_epochs']
    src, _ = tiny_model
    r = run('transfer', '--source', str(src), '--env-config', 'tiny', '--config', str(EXAMPLES / 'transfer-fine-tuning.yaml'),
            '--episodes', '4', '--num-envs', '2', '--eval-episodes', '1', '--out', str(tmp_path / 'adapted.pt'), '--json')
    assert r.returncode == 0, r.stderr
    transfer = load_model(tmp_path / 'adapted.pt').checkpoint['hyperparameters']['transfer']
    assert (transfer['transfer_type'], transfer['total_episodes'], transfer['ppo']) == ('fine_tuning', 4, {'entropy_coef': 0.01})
    r = run('meta', '--config', str(EXAMPLES / 'meta-fomaml.yaml'), '--iterations', '2', '--meta-batch-size', '2', '--trajectories', '2',
            '--held-out', '1', '--test-steps', '1', '--eval-episodes', '1', '--out', str(tmp_path / 'meta.pt'), '--json')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res['config']['algorithm'] == 'fomaml' and res['config']['iterations'] == 2 and res['held_out_tasks'] == 1
    assert res['config']['inner_lr'] == yaml.safe_load((EXAMPLES / 'meta-fomaml.yaml').read_text())['inner_lr']


def test_train_writes_a_resumable_checkpoint_and_resumes_from_it(tmp_path):
    import torch
    out = tmp_path / 'm.pt'
    r = run('train', '--env-config', 'tiny', '--episodes', '8', '--checkpoint-every', '1', '--out', str(out), '--json')
    assert r.returncode == 0, r.stderr
    ckpt = tmp_path / 'm.ckpt.pt'
    assert json.loads(r.stdout)['checkpoint'] == str(ckpt)
    state = torch.load(ckpt, weights_only=True)['training_state']
    assert state['episodes_done'] == 8 and state['updates_done'] >= 1 and state['env'] is not None
    r = run('train', '--resume', str(ckpt), '--episodes', '12', '--out', str(tmp_path / 'm2.pt'), '--json')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res['episodes'] == 12 and res['hyperparameters']['total_episodes'] == 12 and res['env'] == 'tiny'
    assert torch.load(ckpt, weights_only=True)['training_state']['episodes_done'] == 12  # it kept checkpointing there
    r = run('train', '--resume', str(ckpt), '--learning-rate', '0.1')
    assert r.returncode == 2 and '--resume continues the run with its own settings; drop --learning-rate' in r.stderr
    r = run('train', '--resume', str(out))  # the final model is not a training checkpoint
    assert r.returncode == 2 and 'no training state' in r.stderr
