"""Server tasks on Ray (`RayTaskRunner`) over real HTTP, on a local Ray cluster on loopback: completion with
per-episode results, stop, and kill -9 of the Ray worker. Skipped without `ray` unless LWMECPS_REQUIRE_RAY=1."""
import contextlib
import os
import signal
import socket
import statistics
import sys
import threading
import time

import httpx
import pytest

from test_api_auth import live  # the app served by uvicorn in a thread on loopback

from lwmecps_nb.core import Settings
from lwmecps_nb.distributed import (LOCAL_RAY_CLUSTERS, RayTaskRunner, import_ray, local_ray_cluster,
                                    make_task_runner, ray_session_pids)
from lwmecps_nb.store import EmbeddedMongo, MemoryTaskStore, TaskStore, connect
from lwmecps_nb.tracking import Tracker

API = '/api/training'
TINY = {'env_config': 'tiny', 'hyperparameters': {'num_envs': 1}}

try:
    import ray
except ImportError:
    ray = None
needs_ray = pytest.mark.skipif(ray is None and os.environ.get('LWMECPS_REQUIRE_RAY') != '1',
                               reason="ray is not installed (pip install 'lwmecps_nb[ray]')")


def test_missing_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'ray', None)
    with pytest.raises(ImportError, match=r"pip install 'lwmecps_nb\[ray\]'"):
        import_ray()


def test_ray_runner_needs_a_mongodb_store():
    with pytest.raises(TypeError, match='MongoDB TaskStore'):
        RayTaskRunner(MemoryTaskStore())


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def cluster():
    if ray is None: pytest.fail('LWMECPS_REQUIRE_RAY=1 but ray is not installed')
    with local_ray_cluster(num_cpus=2) as address:
        yield address


@pytest.fixture(scope='module')
def served(cluster, tmp_path_factory):
    "(API URL, store, Ray runner): the REST app with a `RayTaskRunner` on the local cluster, the embedded database."
    from lwmecps_nb.api import create_app
    home = tmp_path_factory.mktemp('ray_home')
    s = Settings(home=home, mongodb_database='ray_http')
    if ray.is_initialized(): ray.shutdown()  # this process's Ray must be the test cluster
    store = TaskStore(connect(s))
    runner = RayTaskRunner(store, address=cluster, num_cpus=1, tracker=Tracker(s, mode='disabled'),
                           stop_poll_s=0.2)
    try:
        with live(create_app(store=store, runner=runner, settings=s)) as url:
            yield url, store, runner
    finally:
        runner.shutdown(wait=True, timeout=60)
        ray.shutdown()
        EmbeddedMongo(home / 'mongodb').stop()


def _until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v: return v
        time.sleep(0.2)
    raise TimeoutError(f'{what} not reached after {timeout} s')


def _new_running(c, store, episodes):
    "A training task started over HTTP, once its Ray worker has recorded its pid and one episode."
    t = c.post(f'{API}/tasks', json={'name': 'on ray', 'total_episodes': episodes, **TINY})
    assert t.status_code == 201, t.text
    tid = t.json()['id']
    assert c.post(f'{API}/tasks/{tid}/start').json()['state'] == 'queued'
    return tid, _until(lambda: (d := store.get_task('training', tid)).get('current_episode', 0) >= 1
                       and d.get('worker') and d, 240, 'first episode on Ray')


@needs_ray
def test_a_training_task_runs_on_ray_over_http(served):
    url, store, runner = served
    with httpx.Client(base_url=url, timeout=30) as c:
        t = c.post(f'{API}/tasks', json={'name': 'tiny on ray', 'total_episodes': 3, **TINY}).json()
        assert c.post(f"{API}/tasks/{t['id']}/start").json()['state'] == 'queued'
        d = _until(lambda: (d := c.get(f"{API}/tasks/{t['id']}").json())['state'] not in ('pending', 'queued', 'running') and d,
                   240, 'task end')
        assert d['state'] == 'completed', d.get('error_message')
        assert d['worker']['executor'] == 'ray' and d['worker']['pid'] != os.getpid()
        rows = c.get(f"{API}/tasks/{t['id']}/results").json()['results']
        assert [r['episode'] for r in rows] == [1, 2, 3]
    assert store.task_model('training', t['id'])  # the model the worker saved, in the server's GridFS
    _until(lambda: not runner.active(), 30, 'the runner to settle the task')


@needs_ray
def test_stop_ends_a_ray_task_cancelled(served):
    url, store, runner = served
    with httpx.Client(base_url=url, timeout=30) as c:
        tid, _ = _new_running(c, store, 100_000)
        assert c.post(f'{API}/tasks/{tid}/stop').status_code == 200
        d = runner.wait('training', tid, timeout=120)
        assert d['state'] == 'cancelled', d
        assert len(c.get(f'{API}/tasks/{tid}/results').json()['results']) == d['current_episode'] >= 1


@needs_ray
def test_kill_9_of_the_ray_worker_fails_the_task_with_the_reason(served):
    url, store, runner = served
    with httpx.Client(base_url=url, timeout=30) as c:
        tid, doc = _new_running(c, store, 100_000)
        os.kill(doc['worker']['pid'], signal.SIGKILL)
        d = runner.wait('training', tid, timeout=120)
        assert d['state'] == 'failed', d
        assert 'Ray worker running the task died' in d['error_message'] and 'not retried' in d['error_message']
        assert c.get(f'{API}/tasks/{tid}').json()['state'] == 'failed'
        assert ('training', tid) not in runner.active()


@needs_ray
def test_a_worker_that_cannot_reach_the_database_fails_the_task_with_the_reason(served):
    "An error outside the job (here the worker's own database connection) comes back as a RayTaskError."
    _, store, ray_runner = served
    port = _free_port()  # nothing listens there
    r = RayTaskRunner(store, mongodb_url=f'mongodb://127.0.0.1:{port}', recover=False,
                      tracker=ray_runner._options['tracker'])
    try:
        tid = store.create_task('training', 'no database', dict(TINY), 1)['_id']
        r.start('training', tid)
        d = r.wait('training', tid, timeout=120)
        assert d['state'] == 'failed', d
        assert d['error_message'].startswith('the task failed on its Ray worker: ServerSelectionTimeoutError')
    finally: r.shutdown()


@needs_ray
def test_ray_address_makes_the_server_runner_a_ray_one(served, cluster, monkeypatch):
    _, store, _ = served
    monkeypatch.setenv('RAY_ADDRESS', cluster)
    r = make_task_runner(store, max_concurrent=3, recover=False)
    try: assert isinstance(r, RayTaskRunner) and r.max_concurrent == 3 and r.num_cpus == 1
    finally: r.shutdown()


@needs_ray
def test_ray_overhead_per_task_against_threads(served):
    """Prints the wall time of a tiny task (1 PPO episode) on the thread runner and on Ray, each warmed up by one
    untimed task (imports, Ray worker start); no timed assertion. Torch gets one thread in both, as Ray gives its
    1-CPU workers (OMP_NUM_THREADS=1): otherwise the comparison measures thread contention, not Ray."""
    import torch
    from lwmecps_nb.runner import TaskRunner
    _, store, ray_runner = served
    threads = TaskRunner(store, max_concurrent=1, tracker=ray_runner._options['tracker'], recover=False)
    walls, torch_threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)
    for name, r in (('thread', threads), ('ray', ray_runner)):
        for i in range(4):
            tid = store.create_task('training', 'overhead', dict(TINY), 1)['_id']
            t0 = time.perf_counter()
            r.start('training', tid)
            assert r.wait('training', tid, timeout=240)['state'] == 'completed'
            if i: walls.setdefault(name, []).append(time.perf_counter() - t0)
    threads.shutdown()
    torch.set_num_threads(torch_threads)
    th, ry = statistics.median(walls['thread']), statistics.median(walls['ray'])
    print(f'\ntiny task wall time (median of 3): thread {th * 1e3:.0f} ms, ray {ry * 1e3:.0f} ms, '
          f'Ray overhead {(ry - th) * 1e3:.0f} ms per task')
    assert len(walls['ray']) == 3


@needs_ray
def test_local_cluster_stops_only_its_own_processes(cluster):
    first = ray_session_pids(LOCAL_RAY_CLUSTERS[cluster])
    assert first
    with local_ray_cluster(num_cpus=1) as other:
        temp_dir = LOCAL_RAY_CLUSTERS[other]
        mine = ray_session_pids(temp_dir)
        assert mine and not set(mine) & set(first)
    assert not ray_session_pids(temp_dir) and not temp_dir.exists()
    assert all(os.path.exists(f'/proc/{p}') for p in ray_session_pids(LOCAL_RAY_CLUSTERS[cluster]))
    assert set(first) & set(ray_session_pids(LOCAL_RAY_CLUSTERS[cluster]))


def test_serve_executor_ray_runs_a_task_on_the_cluster_over_http(cluster, tmp_path):
    "`lwmecps-nb serve --executor ray` with RAY_ADDRESS: the console script's server runs a task on the Ray cluster."
    from test_api import serving, _until_done
    with serving(tmp_path, '--executor', 'ray', env={'RAY_ADDRESS': cluster}) as url:
        with httpx.Client(base_url=url, timeout=60) as c:
            t = c.post('/api/training/tasks', json={'env_config': 'tiny', 'total_episodes': 2,
                                                    'hyperparameters': {'num_envs': 2}}).json()
            c.post(f"/api/training/tasks/{t['id']}/start").raise_for_status()
            done = _until_done(c, f"/api/training/tasks/{t['id']}", timeout=180)
    assert done['state'] == 'completed', done
    assert done['worker']['executor'] == 'ray' and done['worker']['pid'] != os.getpid()
