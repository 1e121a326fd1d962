"""Task service reliability over real HTTP (`lwmecps-nb serve` subprocesses on loopback, the embedded database):
two servers on one database, the database killed and moved mid-task, queued tasks, prompt stops and time limits."""
import json
import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from conftest import script
from lwmecps_nb.store import EmbeddedMongo
from test_api import API, _free_port, _serve, _until_done

FAST = {'LWMECPS_HEARTBEAT_S': '0.5'}  # dead after 1.5 s without a heartbeat
LONG = {'env_config': 'tiny', 'total_episodes': 100_000, 'hyperparameters': {'num_envs': 1}}


def _until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f'{what}: not within {timeout} s'
        time.sleep(0.2)
    return got


def _episodes(c, tid):
    return c.get(f'{API}/tasks/{tid}').json()['current_episode']


def _bound(sock, port):
    try: sock.bind(('127.0.0.1', port)); return True
    except OSError: return False


def _stop_server(proc):
    proc.send_signal(signal.SIGINT)
    try: proc.wait(timeout=60)
    except subprocess.TimeoutExpired: proc.kill(); proc.wait()


def test_a_second_server_leaves_the_first_ones_live_task_alone_and_recovers_it_once_that_server_dies(tmp_path):
    first, url1 = _serve(tmp_path, _free_port(), env=FAST)
    second = None
    try:
        with httpx.Client(base_url=url1, timeout=30) as c:
            t = c.post(f'{API}/tasks', json={'name': 'on the first server', **LONG}).json()
            assert c.post(f"{API}/tasks/{t['id']}/start").status_code == 200
            _until(lambda: _episodes(c, t['id']) >= 2, 120, 'the task runs')
        second, url2 = _serve(tmp_path, _free_port(), env=FAST)  # a rolling update: the new server starts beside it
        with httpx.Client(base_url=url2, timeout=30) as c:
            time.sleep(3)  # twice the time after which a silent server counts as dead
            d = c.get(f"{API}/tasks/{t['id']}").json()
            assert d['state'] == 'running', d.get('error_message')  # the first server's task was not falsified
            before = d['current_episode']
            _until(lambda: _episodes(c, t['id']) > before, 60, 'it goes on on the first server')
            first.kill(); first.wait(timeout=30)  # the first server dies: no shutdown handler runs
            d = _until(lambda: (d := c.get(f"{API}/tasks/{t['id']}").json())['state'] != 'running' and d, 30,
                       'the survivor recovers the dead server\'s task')
            assert d['state'] == 'failed' and d['error_message'].startswith('interrupted by server restart'), d
            assert c.delete(f"{API}/tasks/{t['id']}").status_code == 204
    finally:
        if first.poll() is None: first.kill(); first.wait(timeout=30)
        if second is not None: _stop_server(second)
        EmbeddedMongo(tmp_path / 'mongodb').stop()


def test_the_database_killed_and_back_on_another_port_mid_task(tmp_path):
    proc, url = _serve(tmp_path, _free_port(), env=FAST)
    db = EmbeddedMongo(tmp_path / 'mongodb')
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            t = c.post(f'{API}/tasks', json={'name': 'through an outage', **LONG}).json()
            c.post(f"{API}/tasks/{t['id']}/start")
            _until(lambda: _episodes(c, t['id']) >= 3, 120, 'the task runs')
            st = json.loads(db.state_file.read_text())
            os.kill(st['pid'], signal.SIGKILL)  # kill -9 of the database mid-task
            with socket.socket() as squatter:  # its port taken meanwhile: `db start` lands on another one
                squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                _until(lambda: _bound(squatter, st['port']), 30, 'the dead database\'s port frees')
                squatter.listen()
                time.sleep(2)  # the task goes on without its database for a while
                env = {**os.environ, 'LWMECPS_HOME': str(tmp_path)}
                out = subprocess.run([script('lwmecps-nb'), 'db', 'start'], env=env, capture_output=True, text=True,
                                     timeout=90)
                assert out.returncode == 0, out.stderr[-2000:]
            assert db.status()['port'] != st['port']
            # the server follows the database to its new port by itself (no restart): the API answers again
            _until(lambda: c.get(f"{API}/tasks/{t['id']}").status_code == 200, 60, 'the server reconnects')
            d = c.get(f"{API}/tasks/{t['id']}").json()
            assert d['state'] == 'running', d
            before = d['current_episode']
            _until(lambda: _episodes(c, t['id']) > before + 2, 60, 'the task goes on recording')
            assert c.post(f"{API}/tasks/{t['id']}/stop").status_code == 200  # stop works
            d = _until_done(c, f"{API}/tasks/{t['id']}", timeout=60)
            rows = c.get(f"{API}/tasks/{t['id']}/results", params={'limit': 10_000}).json()['results']
            assert d['state'] == 'cancelled' and len(rows) == d['current_episode']
            assert [r['episode'] for r in rows] == list(range(1, len(rows) + 1))  # nothing lost, nothing twice
            assert c.delete(f"{API}/tasks/{t['id']}").status_code == 204
    finally:
        _stop_server(proc)
        db.stop()


def test_tasks_beyond_the_workers_are_queued_and_can_be_cancelled_and_deleted(tmp_path):
    proc, url = _serve(tmp_path, _free_port(), '--max-concurrent', '1', env=FAST)
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            a, b = (c.post(f'{API}/tasks', json={'name': n, **LONG}).json() for n in ('runs', 'waits'))
            assert [c.post(f"{API}/tasks/{t['id']}/start").json()['state'] for t in (a, b)] == ['queued', 'queued']
            _until(lambda: c.get(f"{API}/tasks/{a['id']}").json()['state'] == 'running', 60, 'the first runs')
            time.sleep(1)
            d = c.get(f"{API}/tasks/{b['id']}").json()
            assert d['state'] == 'queued' and d['current_episode'] == 0  # not shown running while it waits
            assert [x['id'] for x in c.get(f'{API}/tasks', params={'state': 'queued'}).json()['items']] == [b['id']]
            r = c.delete(f"{API}/tasks/{b['id']}")
            assert r.status_code == 409 and 'is queued; stop it before deleting it' in r.json()['detail']
            assert c.post(f"{API}/tasks/{b['id']}/stop").json()['state'] == 'cancelled'  # at once
            assert c.delete(f"{API}/tasks/{b['id']}").status_code == 204
            c.post(f"{API}/tasks/{a['id']}/stop")
            assert _until_done(c, f"{API}/tasks/{a['id']}", timeout=60)['state'] == 'cancelled'
    finally:
        _stop_server(proc)
        EmbeddedMongo(tmp_path / 'mongodb').stop()


@pytest.mark.parametrize('case', ['long update', 'long episode'])
def test_a_stop_lands_inside_long_rollouts_and_updates_and_ctrl_c_ends_the_server(tmp_path, case):
    "Settings at their bounds: one PPO update of 1,000 epochs, or episodes of 10,080 steps; stop and Ctrl-C still land."
    hp = ({'num_envs': 8, 'n_steps': 2048, 'n_epochs': 1000, 'batch_size': 64} if case == 'long update' else
          {'num_envs': 1, 'n_steps': 10_080})
    env_config = 'tiny' if case == 'long update' else {'cluster': 'tiny', 'env_id': 'lwmecps_nb/KubeMEC-v1',
                                                       'max_episode_steps': 10_080}  # about 8 s an episode here
    proc, url = _serve(tmp_path, _free_port(), env=FAST)
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            t = c.post(f'{API}/tasks', json={'env_config': env_config, 'total_episodes': 1000,
                                             'hyperparameters': hp}).json()
            assert 'id' in t, t
            c.post(f"{API}/tasks/{t['id']}/start")
            _until(lambda: c.get(f"{API}/tasks/{t['id']}").json()['state'] == 'running', 60, 'it runs')
            time.sleep(8 if case == 'long update' else 1)  # well inside the update, or inside the first episode
            c.post(f"{API}/tasks/{t['id']}/stop")
            d = _until_done(c, f"{API}/tasks/{t['id']}", timeout=60)
            assert d['state'] == 'cancelled' and d['current_episode'] < 1000, d
            if case == 'long episode': assert d['current_episode'] == 0, d  # inside the first episode
            u = c.post(f'{API}/tasks', json={'env_config': env_config, 'total_episodes': 1000,
                                             'hyperparameters': hp}).json()
            c.post(f"{API}/tasks/{u['id']}/start")
            _until(lambda: c.get(f"{API}/tasks/{u['id']}").json()['state'] == 'running', 60, 'the second runs')
            time.sleep(2)
        proc.send_signal(signal.SIGINT)  # Ctrl-C with a task inside a long rollout or update
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None: proc.kill(); proc.wait()
        EmbeddedMongo(tmp_path / 'mongodb').stop()


def test_a_task_past_its_time_limit_fails_saying_so_and_keeps_its_results(tmp_path):
    proc, url = _serve(tmp_path, _free_port(), env=FAST)
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            r = c.post(f'{API}/tasks', json={**LONG, 'time_limit_s': 0})
            assert r.status_code == 422 and r.json()['detail'][0]['loc'] == ['body', 'time_limit_s']
            t = c.post(f'{API}/tasks', json={**LONG, 'time_limit_s': 3}).json()
            c.post(f"{API}/tasks/{t['id']}/start")
            d = _until_done(c, f"{API}/tasks/{t['id']}", timeout=60)
            assert d['state'] == 'failed' and d['error_message'].startswith('time limit of 3 s reached after '), d
            rows = c.get(f"{API}/tasks/{t['id']}/results").json()['results']
            assert d['current_episode'] > 0 and len(rows) == d['current_episode'] and d['model_id']
    finally:
        _stop_server(proc)
        EmbeddedMongo(tmp_path / 'mongodb').stop()
