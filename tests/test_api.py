"""The REST server over real HTTP: `lwmecps-nb serve` as a subprocess on loopback, the embedded MongoDB-wire server, W&B offline."""
import contextlib
import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from conftest import script
from lwmecps_nb.store import EmbeddedMongo

API = '/api/training'


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _serve(home, port, *args, env=None):
    "`lwmecps-nb serve` with `args`; the environment's API token left out unless `env` gives one; ready once /readyz says so."
    env = {**{k: v for k, v in os.environ.items() if k not in ('LWMECPS_API_TOKEN', 'LWMECPS_API_TOKEN_FILE')},
           'LWMECPS_HOME': str(home), 'WANDB_MODE': 'offline', 'MONGODB_DATABASE': 'api_http', **(env or {})}
    env.pop('MONGODB_URL', None)
    proc = subprocess.Popen([script('lwmecps-nb'), '--log-level', 'INFO', 'serve', '--port', str(port), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(home / 'server.err', 'ab'))
    url = f'http://127.0.0.1:{port}'
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, (home / 'server.err').read_text()[-3000:]
        try:
            if httpx.get(url + '/readyz', timeout=1).status_code == 200: return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise TimeoutError('the server did not come up in 90 s')


@contextlib.contextmanager
def serving(home, *args, env=None):
    "`lwmecps-nb serve ARGS` on a free loopback port with its data under `home`; stopped (server, then embedded database) at the end."
    proc, url = _serve(home, _free_port(), *args, env=env)
    try: yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try: proc.wait(timeout=60)
        except subprocess.TimeoutExpired: proc.kill()
        EmbeddedMongo(home / 'mongodb').stop()


@pytest.fixture()
def server(tmp_path):
    with serving(tmp_path) as url: yield url


def _until_done(c, path, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = c.get(path).json()
        if d['state'] not in ('pending', 'queued', 'running'): return d
        time.sleep(0.25)
    raise TimeoutError(f'{path} still running after {timeout} s')


def test_spec_example_over_http(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        # 1. train PPO on cluster A (the spec's body), 2. a training task on cluster B serves as the transfer target
        src = c.post(f'{API}/tasks', json={'name': 'Cluster A Training', 'model_type': 'ppo', 'env_config': {'cluster': 'cluster-a'},
                                           'total_episodes': 8, 'hyperparameters': {'num_envs': 4}})
        assert src.status_code == 201, src.text
        src = src.json()
        tgt = c.post(f'{API}/tasks', json={'name': 'Cluster B', 'env_config': {'cluster': 'cluster-b'}, 'total_episodes': 8}).json()
        assert c.post(f"{API}/tasks/{src['id']}/start").json()['state'] == 'queued'  # claimed; a worker runs it
        assert c.post(f"{API}/tasks/{src['id']}/start").status_code == 409
        done = _until_done(c, f"{API}/tasks/{src['id']}")
        assert done['state'] == 'completed' and done['progress'] == 100.0, done
        res = c.get(f"{API}/tasks/{src['id']}/results").json()
        assert [r['episode'] for r in res['results']] == list(range(1, 9)) and len(res['metrics']['train/episode_reward']) == 8
        page = c.get(f"{API}/tasks/{src['id']}/results", params={'skip': 2, 'limit': 3}).json()
        assert [r['episode'] for r in page['results']] == [3, 4, 5]
        # 3. the spec's transfer body
        body = {'name': 'Transfer Learning Task', 'description': 'adapt the PPO model to a new cluster', 'source_task_id': src['id'],
                'target_task_id': tgt['id'], 'transfer_type': 'fine_tuning', 'frozen_layers': [0, 1], 'learning_rate': 1e-4, 'total_episodes': 8}
        bad = c.post(f'{API}/transfer-tasks', json={**body, 'source_task_id': tgt['id']})
        assert bad.status_code == 409 and 'is pending' in bad.json()['detail']
        for kind in ('fine_tuning', 'feature_extraction', 'layer_wise'):  # each transfer type
            tt = c.post(f'{API}/transfer-tasks', json={**body, 'transfer_type': kind, 'frozen_layers': [0, 1] if kind != 'fine_tuning' else None})
            assert tt.status_code == 201, tt.text
            tt = tt.json()
            c.post(f"{API}/transfer-tasks/{tt['id']}/start")
            td = _until_done(c, f"{API}/transfer-tasks/{tt['id']}")
            assert td['state'] == 'completed', td
            tr = c.get(f"{API}/transfer-tasks/{tt['id']}/results").json()
            assert len(tr['results']) == 8 and 'transfer_metric' in tr['summary'] and tr['model_id'], tr
            assert tr['summary']['frozen_at_start'] == ([] if kind == 'fine_tuning' else [0, 1])
        # 4. a small meta task: its results carry the spec's metric names
        mt = c.post(f'{API}/meta-tasks', json={'name': 'MAML Meta-Learning', 'meta_algorithm': 'fomaml', 'inner_lr': 0.5, 'outer_lr': 0.001,
                                                'adaptation_steps': 1, 'meta_batch_size': 2, 'trajectories': 2, 'held_out_tasks': 1,
                                                'task_distribution': {'kubernetes_scaling': {'max_pods': 20, 'cpu_requirement': 1.0, 'memory_requirement': 1000},
                                                                      'load_balancing': {'traffic_pattern': 'uniform', 'latency_threshold': 0.5}},
                                                'total_episodes': 3})
        assert mt.status_code == 201, mt.text
        mt = mt.json()
        c.post(f"{API}/meta-tasks/{mt['id']}/start")
        md = _until_done(c, f"{API}/meta-tasks/{mt['id']}", timeout=400)
        assert md['state'] == 'completed', md
        mr = c.get(f"{API}/meta-tasks/{mt['id']}/results").json()
        assert len(mr['metrics']['fomaml/meta_loss']) == 3 and 'fomaml/gradient_norm' in mr['metrics']
        assert 'fomaml/adaptation_speed' in mr['metrics'] and len(set(mr['metrics']['fomaml/meta_loss'])) == 3  # it moves
        assert 'fomaml/adaptation_accuracy' in mr['summary'] and md['algorithm_run'] == 'fomaml'
        assert isinstance(mr['advice'], list) and md['advice'] == mr['advice']  # the runner's troubleshooting, in both answers
        # the document's FOMAML_CONFIG runs implicit FOMAML under the fomaml/* names: the API says which algorithm runs
        fomaml_config = {'inner_lr': 0.01, 'outer_lr': 0.001, 'adaptation_steps': 5, 'meta_batch_size': 6, 'use_implicit_gradients': True}
        fo = c.post(f'{API}/meta-tasks', json={'name': 'FOMAML', 'meta_algorithm': 'fomaml', **fomaml_config})
        assert fo.status_code == 201 and fo.json()['algorithm_run'] == 'implicit_fomaml', fo.text
        got = c.get(f"{API}/meta-tasks/{fo.json()['id']}").json()
        assert got['algorithm_run'] == 'implicit_fomaml' and got['config']['meta_algorithm'] == 'fomaml'
        assert md['wandb_run_id'] and md['wandb_run_id'] != td['wandb_run_id']  # one W&B run per task
        listing = c.get(f'{API}/tasks', params={'state': 'completed'}).json()
        assert listing['total'] == 1 and listing['items'][0]['id'] == src['id']
        assert set(c.get('/openapi.json').json()['paths']) >= {f'{API}/tasks', f'{API}/transfer-tasks/{{task_id}}/start', f'{API}/meta-tasks/{{task_id}}/results'}


def test_bad_requests_get_clear_errors(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        r = c.post(f'{API}/meta-tasks', json={'inner_lr': -1})
        assert r.status_code == 422 and r.json()['detail'][0]['loc'] == ['body', 'inner_lr'] and 'greater than 0' in r.text
        r = c.post(f'{API}/meta-tasks', json={'meta_algorithm': 'reptile'})
        assert r.status_code == 422 and 'meta_algorithm' in r.text
        r = c.post(f'{API}/meta-tasks', json={'adaptation_steps': 0})
        assert r.status_code == 422 and 'adaptation_steps' in r.text
        r = c.post(f'{API}/transfer-tasks', json={'source_task_id': '64f1b2a3c9d4e5f6a7b8c9d0', 'target_env_config': 'cluster-b', 'transfer_type': 'finetune'})
        assert r.status_code == 422 and 'transfer_type' in r.text
        r = c.post(f'{API}/transfer-tasks', json={'source_task_id': '64f1b2a3c9d4e5f6a7b8c9d0', 'target_env_config': 'cluster-b'})
        assert r.status_code == 404 and 'no training task' in r.json()['detail']
        assert c.get(f'{API}/tasks/not-an-id').status_code == 422
        assert c.get(f'{API}/tasks/64f1b2a3c9d4e5f6a7b8c9d0').status_code == 404
        r = c.get(f'{API}/tasks', params={'state': 'done'})
        assert r.status_code == 422
        t = c.post(f'{API}/tasks', json={'env_config': 'cluster-a', 'total_episodes': 100_000}).json()
        c.post(f"{API}/tasks/{t['id']}/start")
        assert c.delete(f"{API}/tasks/{t['id']}").status_code == 409  # running: stop it first
        assert c.post(f"{API}/tasks/{t['id']}/stop").status_code == 200
        d = _until_done(c, f"{API}/tasks/{t['id']}", timeout=120)
        assert d['state'] == 'cancelled' and d['current_episode'] >= 0
        assert len(c.get(f"{API}/tasks/{t['id']}/results").json()['results']) == d['current_episode']
        assert c.delete(f"{API}/tasks/{t['id']}").status_code == 204


def test_killed_server_leaves_no_task_running_forever_and_the_task_resumes(tmp_path):
    port, fast = _free_port(), {'LWMECPS_CHECKPOINT_S': '0', 'LWMECPS_HEARTBEAT_S': '0.5'}  # checkpoint after every update
    proc, url = _serve(tmp_path, port, env=fast)
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            t = c.post(f'{API}/tasks', json={'name': 'long', 'env_config': 'tiny', 'total_episodes': 100_000,
                                             'hyperparameters': {'num_envs': 4}}).json()
            c.post(f"{API}/tasks/{t['id']}/start")
            deadline = time.monotonic() + 120
            while (c.get(f"{API}/tasks/{t['id']}").json().get('checkpoint_episode') or 0) < 8:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        proc.kill(); proc.wait(timeout=30)  # a crash: no shutdown handler runs
        proc, url = _serve(tmp_path, port, env=fast)
        with httpx.Client(base_url=url, timeout=30) as c:
            deadline = time.monotonic() + 30  # its server stopped beating: failed once 3 beats (1.5 s) have passed
            while (d := c.get(f"{API}/tasks/{t['id']}").json())['state'] == 'running':
                assert time.monotonic() < deadline
                time.sleep(0.2)
            ck = d['checkpoint_episode']
            assert d['state'] == 'failed' and d['error_message'] == (
                f'interrupted by server restart; resumable from its checkpoint at episode {ck}: POST .../{{task_id}}/resume')
            assert len(c.get(f"{API}/tasks/{t['id']}/results").json()['results']) >= ck  # what it recorded is kept
            r = c.post(f"{API}/tasks/{t['id']}/resume")
            assert r.status_code == 200 and r.json()['state'] == 'queued', r.text
            deadline = time.monotonic() + 120
            while c.get(f"{API}/tasks/{t['id']}").json()['current_episode'] < ck + 8:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            c.post(f"{API}/tasks/{t['id']}/stop")
            d = _until_done(c, f"{API}/tasks/{t['id']}", timeout=120)
            rows = c.get(f"{API}/tasks/{t['id']}/results").json()['results']
            assert d['state'] == 'cancelled' and [r['episode'] for r in rows] == list(range(1, len(rows) + 1))  # no gap, no repeat
            assert c.post(f"{API}/tasks/{t['id']}/resume").status_code == 200  # a stopped run resumes too
            c.post(f"{API}/tasks/{t['id']}/stop"); _until_done(c, f"{API}/tasks/{t['id']}", timeout=120)
            m = c.post(f'{API}/meta-tasks', json={'total_episodes': 1}).json()
            assert c.post(f"{API}/meta-tasks/{m['id']}/resume").status_code in (404, 405)  # training tasks only
    finally:
        proc.kill(); proc.wait(timeout=30)
        EmbeddedMongo(tmp_path / 'mongodb').stop()


def test_database_down_gives_503_and_recovers(server, tmp_path):
    with httpx.Client(base_url=server, timeout=30) as c:
        t = c.post(f'{API}/tasks', json={'name': 'kept', 'env_config': 'tiny', 'total_episodes': 2}).json()
        EmbeddedMongo(tmp_path / 'mongodb').stop()
        h = c.get('/health')
        assert h.status_code == 503 and h.json()['status'] == 'unavailable'
        assert c.get('/readyz').status_code == 503 and c.get('/livez').json() == {'status': 'alive'}  # not ready, alive
        r = c.get(f'{API}/tasks')
        assert r.status_code == 503 and 'database unavailable' in r.json()['detail']
        r = c.post(f'{API}/meta-tasks', json={'name': 'x'})
        assert r.status_code == 503
        EmbeddedMongo(tmp_path / 'mongodb').start()  # back on its previous port: the server reconnects by itself
        deadline = time.monotonic() + 60
        while c.get('/health').status_code != 200: assert time.monotonic() < deadline; time.sleep(0.5)
        assert c.get('/readyz').json() == {'status': 'ready'}
        assert c.get(f"{API}/tasks/{t['id']}").json()['name'] == 'kept'


def _start(c, path, timeout=240):
    "POST a start, waiting out 429s as a client should: the server holds max_concurrent + max_queued tasks at most."
    deadline = time.monotonic() + timeout
    while (r := c.post(path)).status_code == 429 and time.monotonic() < deadline:
        time.sleep(float(r.headers['Retry-After']))
    return r


def test_twenty_concurrent_clients(server):
    import threading
    codes, ids, lock = [], [], threading.Lock()

    errors = []

    def client(i):
        try: _client(i)
        except Exception as e:  # an exception in a thread would otherwise vanish: keep it for the assertion
            with lock: errors.append(f'client {i}: {type(e).__name__}: {e}')

    def _client(i):
        with httpx.Client(base_url=server, timeout=60) as c:
            r = c.post(f'{API}/tasks', json={'name': f'client-{i}', 'env_config': 'tiny', 'total_episodes': 2, 'hyperparameters': {'num_envs': 1}})
            got = [r.status_code]
            tid = r.json()['id']
            got.append(_start(c, f'{API}/tasks/{tid}/start').status_code)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                g = c.get(f'{API}/tasks/{tid}')
                got.append(g.status_code)
                if g.json()['state'] not in ('pending', 'queued', 'running'): break
                time.sleep(0.3)
            got.append(c.get(f'{API}/tasks', params={'limit': 5}).status_code)
            with lock: codes.extend(got); ids.append(tid)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads: t.start()
    for t in threads: t.join(timeout=300)
    assert not errors, errors[:5]
    assert not [c for c in codes if c >= 500] and len(ids) == 20 and len(set(ids)) == 20
    with httpx.Client(base_url=server, timeout=30) as c:
        listing = c.get(f'{API}/tasks', params={'limit': 100}).json()
        assert listing['total'] == 20 and sorted(d['id'] for d in listing['items']) == sorted(ids)
        assert all(d['state'] == 'completed' and d['current_episode'] == 2 for d in listing['items'])
        assert all(len(c.get(f'{API}/tasks/{i}/results').json()['results']) == 2 for i in ids)  # no lost or duplicated results


def test_openapi_shows_every_hyperparameter_and_what_each_route_returns():
    "The bodies and answers are typed: OpenAPI carries PPO's and meta-learning's settings with their bounds."
    from lwmecps_nb.api import create_app
    from lwmecps_nb.core import Settings
    from lwmecps_nb.meta_rl import MetaSettings
    from lwmecps_nb.ppo import PPOHyperparameters
    from lwmecps_nb.runner import TaskRunner
    from lwmecps_nb.store import MemoryTaskStore
    store = MemoryTaskStore()
    runner = TaskRunner(store, max_concurrent=1, recover=False)
    try: spec = create_app(store=store, runner=runner, settings=Settings()).openapi()
    finally: runner.shutdown(wait=True)
    schemas = spec['components']['schemas']
    hp = schemas['PPOHyperparameters']['properties']
    assert set(hp) == {f.alias or n for n, f in PPOHyperparameters.model_fields.items()} and 'lambda' in hp
    assert hp['learning_rate']['exclusiveMinimum'] == 0 and hp['n_epochs']['maximum'] == 1000 and hp['n_steps']['description']
    meta = schemas['MetaTaskCreate']['properties']
    assert set(MetaSettings.model_fields) <= set(meta) and meta['meta_batch_size']['maximum'] == 64
    paths = spec['paths']
    ok = lambda path, method, code: paths[path][method]['responses'][code]['content']['application/json']['schema']
    assert ok('/api/training/tasks', 'post', '201') == {'$ref': '#/components/schemas/TaskOut'}
    assert ok('/api/training/tasks', 'get', '200') == {'$ref': '#/components/schemas/TaskPage'}
    assert ok('/api/training/meta-tasks/{task_id}/results', 'get', '200') == {'$ref': '#/components/schemas/TaskResults'}
    assert ok('/api/training/tasks/{task_id}/resume', 'post', '200') == {'$ref': '#/components/schemas/TaskOut'}
    assert '/api/training/meta-tasks/{task_id}/resume' not in paths  # only PPO runs checkpoint themselves
    assert {'state', 'progress', 'config', 'model_id'} <= set(schemas['TaskOut']['properties'])
