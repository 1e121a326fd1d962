"""API security over real HTTP on loopback: bearer-token authentication on every route but the probes, `/livez` and
`/readyz`, the token never logged, stored, sent to W&B or echoed, the bound on queued and running tasks (429 with
Retry-After), the request body limit (413), and `lwmecps-nb serve`'s refusal to listen on a non-loopback address
without a token.

Servers run in this process (uvicorn in a thread, so that the log lines reach caplog) or as `lwmecps-nb serve`
subprocesses; every one listens on 127.0.0.1, and every wait is bounded."""
import contextlib
import logging
import os
import secrets
import subprocess
import threading
import time

import bson
import httpx
import pymongo
import pytest
import uvicorn

from conftest import script
from test_api import _free_port, serving
from lwmecps_nb.api import RETRY_AFTER_S, create_app
from lwmecps_nb.core import Settings
from lwmecps_nb.runner import TaskRunner
from lwmecps_nb.store import EmbeddedMongo, MemoryTaskStore, TaskStore, connect
from lwmecps_nb.tracking import Tracker

API = '/api/training'
TOKEN = 'tok-' + secrets.token_urlsafe(24)  # unique: found anywhere, it leaked
OK = {'Authorization': f'Bearer {TOKEN}'}
WRONG = {'Authorization': f'Bearer {TOKEN}x'}  # the right one plus a character: no prefix match may pass
OID = '64f1b2a3c9d4e5f6a7b8c9d0'
PROBES = ('/livez', '/readyz')
NO_TOKEN_ENV = ('LWMECPS_API_TOKEN', 'LWMECPS_API_TOKEN_FILE')


def _one_episode(ctx):
    ctx.callback({'episode_reward': -1.0})
    return {'stub': True}


STUB_JOBS = {k: _one_episode for k in ('training', 'transfer', 'meta')}


@contextlib.contextmanager
def live(app):
    "The app on a free loopback port, uvicorn in a thread (its log lines go to the root logger); yields the URL."
    server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=0, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, 'the server did not start'
        time.sleep(0.02)
    try: yield f'http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}'
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope='module')
def settings(tmp_path_factory):
    "Settings with the token, W&B offline, the embedded database under a temporary home (stopped at the end)."
    home = tmp_path_factory.mktemp('auth')
    yield Settings(home=home, mongodb_database='auth', wandb_mode='offline', api_token=TOKEN)
    EmbeddedMongo(home / 'mongodb').stop()


@pytest.fixture(scope='module')
def store(settings):
    s = TaskStore(connect(settings))
    yield s
    s.db.client.close()


def _until_done(c, path, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = c.get(path, headers=OK).json()
        if d['state'] not in ('pending', 'queued', 'running'): return d
        time.sleep(0.1)
    raise TimeoutError(f'{path} still running after {timeout} s')


def _requests(app):
    "(method, path) of every route of the app, from its OpenAPI schema (routers included), a task id filled in."
    return [(m.upper(), path.replace('{task_id}', OID)) for path, ops in app.openapi()['paths'].items() for m in ops]


def test_every_route_but_the_probes_needs_the_token(store, settings):
    runner = TaskRunner(store, tracker=Tracker(settings, mode='disabled'), jobs=STUB_JOBS, recover=False)
    app = create_app(store=store, runner=runner, settings=settings)  # the token from the settings
    routes = _requests(app)
    assert len(routes) >= 24 and {p for _, p in routes} >= {*PROBES, '/health', f'{API}/tasks'}
    try:
        with live(app) as url, httpx.Client(base_url=url, timeout=30) as c:
            for method, path in routes:
                body = {} if method in ('POST', 'PUT', 'PATCH') else None
                if path in PROBES:
                    assert c.request(method, path).status_code == 200, path
                    continue
                missing, wrong = c.request(method, path, json=body), c.request(method, path, json=body, headers=WRONG)
                for r in (missing, wrong):
                    assert r.status_code == 401 and r.headers['www-authenticate'].startswith('Bearer'), (method, path, r.text)
                    assert set(r.json()) == {'detail'} and TOKEN not in r.text
                assert 'Authorization: Bearer <token>' in missing.json()['detail']
                assert 'not this server' in wrong.json()['detail'] and TOKEN[4:12] not in wrong.text  # no hint about it
                assert c.request(method, path, json=body, headers=OK).status_code != 401, (method, path)
            # another scheme, an empty bearer, a malformed body: 401 before anything else
            assert c.get(f'{API}/tasks', headers={'Authorization': f'Basic {TOKEN}'}).status_code == 401
            assert c.get(f'{API}/tasks', headers={'Authorization': 'Bearer'}).status_code == 401
            assert c.post(f'{API}/tasks', content=b'{oops', headers={'content-type': 'application/json'}).status_code == 401
            # the right token: 200 on each router and /health, and a task's whole life
            for router in ('tasks', 'transfer-tasks', 'meta-tasks'):
                r = c.get(f'{API}/{router}', headers=OK)
                assert r.status_code == 200 and r.json()['total'] >= 0, r.text
            assert c.get('/health', headers=OK).json()['status'] == 'ok'
            t = c.post(f'{API}/tasks', json={'name': 'authorised', 'env_config': 'tiny', 'total_episodes': 1}, headers=OK)
            assert t.status_code == 201, t.text
            tid = t.json()['id']
            assert c.post(f'{API}/tasks/{tid}/start', headers=OK).status_code == 200
            assert _until_done(c, f'{API}/tasks/{tid}')['state'] == 'completed'
            assert len(c.get(f'{API}/tasks/{tid}/results', headers=OK).json()['results']) == 1
            assert c.delete(f'{API}/tasks/{tid}', headers=OK).status_code == 204
            m = c.post(f'{API}/meta-tasks', json={'name': 'm'}, headers=OK)
            assert m.status_code == 201 and c.get(f"{API}/meta-tasks/{m.json()['id']}", headers=OK).status_code == 200
            x = c.post(f'{API}/transfer-tasks', json={'source_task_id': OID, 'target_env_config': 'tiny'}, headers=OK)
            assert x.status_code == 404 and 'no training task' in x.json()['detail']  # authenticated, then checked
    finally:
        runner.shutdown()


def test_openapi_declares_the_bearer_scheme(store, settings):
    runner = TaskRunner(store, tracker=Tracker(settings, mode='disabled'), jobs=STUB_JOBS, recover=False)
    try:
        with live(create_app(store=store, runner=runner, settings=settings)) as url:
            schema = httpx.get(f'{url}/openapi.json', timeout=10).json()
            scheme = schema['components']['securitySchemes']['bearerAuth']
            assert scheme['type'] == 'http' and scheme['scheme'] == 'bearer' and 'LWMECPS_API_TOKEN' in scheme['description']
            paths = schema['paths']
            assert paths[f'{API}/tasks']['post']['security'] == [{'bearerAuth': []}] and paths['/health']['get']['security'] == [{'bearerAuth': []}]
            assert 'security' not in paths['/livez']['get'] and 'security' not in paths['/readyz']['get']
            assert '429' in paths[f'{API}/tasks/{{task_id}}/start']['post']['responses']
            assert httpx.get(f'{url}/docs', timeout=10).status_code == 200  # the page with the Authorize button
    finally:
        runner.shutdown()


class _CountingDb:
    "A database that counts the pings it is asked for and fails them."
    name = 'counting'
    def __init__(self): self.pings = 0
    def command(self, *args, **kwargs):
        self.pings += 1
        raise pymongo.errors.ServerSelectionTimeoutError('db.internal.example:27017: timed out')


def test_readyz_is_503_while_the_database_is_down_and_livez_never_asks_it():
    closed = _free_port()  # nothing listens there
    client = pymongo.MongoClient(f'mongodb://127.0.0.1:{closed}', serverSelectionTimeoutMS=300, connectTimeoutMS=300)
    counting = _CountingDb()
    runner = TaskRunner(MemoryTaskStore(), tracker=Tracker(mode='disabled'), recover=False)
    try:
        for db in (client['lwmecps'], counting):
            app = create_app(store=type('DownStore', (), {'db': db})(), runner=runner, settings=Settings(), token=TOKEN)
            with live(app) as url, httpx.Client(base_url=url, timeout=30) as c:
                r = c.get('/readyz')
                assert r.status_code == 503 and r.json() == {'status': 'unavailable', 'reason': 'database unavailable (ServerSelectionTimeoutError)'}, r.text
                assert str(closed) not in r.text and 'example' not in r.text  # no address leaks
                before = counting.pings
                assert c.get('/livez').json() == {'status': 'alive'} and counting.pings == before
                assert c.get('/health').status_code == 401  # the detailed check is behind the token
                assert c.get('/health', headers=OK).status_code == 503
        assert counting.pings == 2  # /readyz and /health, never /livez
    finally:
        runner.shutdown()
        client.close()


def _stored_bytes(db) -> bytes:
    "Every document of every collection, as BSON."
    return b''.join(bson.encode(d) for name in db.list_collection_names() for d in db[name].find())


def test_token_is_never_logged_stored_sent_to_wandb_or_echoed(store, settings, caplog):
    caplog.set_level(logging.DEBUG)
    runner = TaskRunner(store, tracker=Tracker(settings), jobs=STUB_JOBS, recover=False)  # W&B offline, with the settings
    app = create_app(store=store, runner=runner, settings=settings)
    seen = []
    try:
        with live(app) as url, httpx.Client(base_url=url, timeout=30) as c:
            send = lambda *a, **kw: seen.append(r := c.request(*a, **kw)) or r
            ids = {}
            for kind, body in (('tasks', {'name': 'secret-free', 'env_config': 'tiny', 'total_episodes': 1}),
                               ('meta-tasks', {'name': 'meta', 'total_episodes': 1})):
                ids[kind] = send('POST', f'{API}/{kind}', json=body, headers=OK).json()['id']
                assert send('POST', f'{API}/{kind}/{ids[kind]}/start', headers=OK).status_code == 200
                _until_done(c, f'{API}/{kind}/{ids[kind]}')
                send('GET', f'{API}/{kind}/{ids[kind]}/results', headers=OK)
            send('GET', f'{API}/tasks', headers=WRONG); send('GET', f'{API}/tasks'); send('GET', '/health', headers=OK)
            send('POST', f'{API}/tasks', json={'name': 1, 'total_episodes': 0}, headers=OK)  # a 422 that echoes its input
            send('GET', '/openapi.json'); send('GET', '/readyz')
    finally:
        runner.shutdown()
    assert 'wrong bearer token' in caplog.text and 'no bearer token' in caplog.text  # the logs were captured,
    assert 'GET /api/training/tasks HTTP/1.1" 401' in caplog.text  # uvicorn's access lines included
    assert TOKEN not in caplog.text and TOKEN[4:20] not in caplog.text
    for r in seen:
        assert TOKEN not in r.text and TOKEN not in str(r.headers), (r.request.url, r.text[:300])
    stored = _stored_bytes(store.db)
    assert b'secret-free' in stored and TOKEN.encode() not in stored
    wandb_files = [p for p in (settings.home / 'wandb').rglob('*') if p.is_file()]
    assert any(p.suffix == '.wandb' for p in wandb_files)  # the runs were written, offline
    assert any(b'secret-free' in p.read_bytes() for p in wandb_files)  # what W&B got is in these files
    assert not [p for p in wandb_files if TOKEN.encode() in p.read_bytes()]
    assert TOKEN not in repr(settings)


def _held_runner(release: threading.Event, max_concurrent=1):
    def held(ctx):
        release.wait(60)
        return {}
    return TaskRunner(MemoryTaskStore(), max_concurrent=max_concurrent, tracker=Tracker(mode='disabled'), recover=False,
                      jobs={k: held for k in ('training', 'transfer', 'meta')})


def test_start_past_the_bound_is_429_with_retry_after():
    release = threading.Event()
    runner = _held_runner(release)
    app = create_app(store=runner.store, runner=runner, settings=Settings(), token=TOKEN, max_queued=2)
    try:
        with live(app) as url, httpx.Client(base_url=url, timeout=30, headers=OK) as c:
            ids = [c.post(f'{API}/tasks', json={'env_config': 'tiny'}).json()['id'] for _ in range(4)]
            assert [c.post(f'{API}/tasks/{i}/start').status_code for i in ids[:3]] == [200] * 3  # 1 running, 2 queued
            r = c.post(f'{API}/tasks/{ids[3]}/start')
            assert r.status_code == 429 and r.headers['retry-after'] == str(RETRY_AFTER_S) == '5'
            assert 'the server is busy: 3 tasks are running or queued' in r.json()['detail'] and 'max_queued 2' in r.json()['detail']
            assert c.get(f'{API}/tasks/{ids[3]}').json()['state'] == 'pending'  # refused, not queued
            meta = c.post(f'{API}/meta-tasks', json={}).json()['id']
            assert c.post(f'{API}/meta-tasks/{meta}/start').status_code == 429  # the bound is the server's, all kinds
            assert c.post(f'{API}/tasks/{ids[0]}/stop').status_code == 200  # stopping is never refused
            release.set()
            runner.wait('training', ids[2], timeout=60)
            assert c.post(f'{API}/tasks/{ids[3]}/start').status_code == 200  # room again
    finally:
        release.set()
        runner.shutdown()


def test_concurrent_starts_cannot_pass_the_bound_together():
    release = threading.Event()
    runner = _held_runner(release, max_concurrent=2)
    app = create_app(store=runner.store, runner=runner, settings=Settings(), max_queued=3)
    try:
        with live(app) as url:
            with httpx.Client(base_url=url, timeout=30) as c:
                ids = [c.post(f'{API}/tasks', json={'env_config': 'tiny'}).json()['id'] for _ in range(12)]
            codes = []
            def start(i):
                with httpx.Client(base_url=url, timeout=30) as c: codes.append(c.post(f'{API}/tasks/{i}/start').status_code)
            threads = [threading.Thread(target=start, args=(i,)) for i in ids]
            for t in threads: t.start()
            for t in threads: t.join(60)
            assert sorted(codes) == [200] * 5 + [429] * 7 and len(runner.active()) == 5
    finally:
        release.set()
        runner.shutdown()


def test_body_over_the_limit_is_413_by_length_and_while_chunked():
    runner = TaskRunner(MemoryTaskStore(), tracker=Tracker(mode='disabled'), jobs=STUB_JOBS, recover=False)
    app = create_app(store=runner.store, runner=runner, settings=Settings(), token=TOKEN, max_body_bytes=4096)
    try:
        with live(app) as url:
            padded = lambda n: {'name': 'x', 'description': '', 'env_config': {'cluster': 'tiny', 'pad': 'p' * n}}
            with httpx.Client(base_url=url, timeout=30, headers=OK) as c:
                r = c.post(f'{API}/tasks', json=padded(8000))
                assert r.status_code == 413 and 'limit of 4096 bytes' in r.json()['detail'], r.text
                def chunks():  # no Content-Length: counted while it arrives
                    for _ in range(16): yield b' ' * 1000
                r = c.post(f'{API}/tasks', content=chunks(), headers={'content-type': 'application/json'})
                assert r.status_code == 413 and 'transfer-encoding' in r.request.headers and 'content-length' not in r.request.headers
            with httpx.Client(base_url=url, timeout=30) as c:  # the limit holds before authentication too
                assert c.post(f'{API}/tasks', content=b'x' * 5000).status_code == 413
                assert c.post(f'{API}/tasks', content=b'{}', headers={'content-type': 'application/json'}).status_code == 401
                ok = c.post(f'{API}/tasks', json={'name': 'small', 'env_config': 'tiny'}, headers=OK)
                assert ok.status_code == 201, ok.text  # the server goes on serving
                small = c.post(f'{API}/tasks', content=(b'{"name": "chunked"}' for _ in range(1)), headers={**OK, 'content-type': 'application/json'})
                assert small.status_code == 201 and small.json()['name'] == 'chunked'  # a chunked body under the limit
    finally:
        runner.shutdown()


def _cli(*args, env=None, timeout=60):
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in NO_TOKEN_ENV or k in (env or {})}
    return subprocess.run([script('lwmecps-nb'), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_serve_refuses_a_non_loopback_address_without_a_token(tmp_path):
    r = _cli('serve', '--host', '0.0.0.0', '--port', str(_free_port()), env={'LWMECPS_HOME': str(tmp_path)})
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('lwmecps-nb: error: refusing to serve on 0.0.0.0'), r.stderr
    assert all(w in lines[0] for w in ('--token-file', 'LWMECPS_API_TOKEN', '--insecure'))
    assert not (tmp_path / 'mongodb').exists()  # refused before anything started
    r = _cli('serve', '--host', '0.0.0.0', '--token-file', str(tmp_path / 'missing'), env={'LWMECPS_HOME': str(tmp_path)})
    assert r.returncode == 2 and f'--token-file={tmp_path / "missing"}: no such file' in r.stderr
    r = _cli('serve', '--host', '0.0.0.0', env={'LWMECPS_HOME': str(tmp_path), 'LWMECPS_API_TOKEN_FILE': str(tmp_path / 'missing')})
    assert r.returncode == 2 and 'LWMECPS_API_TOKEN_FILE=' in r.stderr
    r = _cli('serve', '--max-queued', '-1')
    assert r.returncode == 2 and '--max-queued must be at least 0' in r.stderr


def test_serve_with_a_token_file_requires_the_token(tmp_path):
    secret = tmp_path / 'secret' / 'token'
    secret.parent.mkdir()
    secret.write_text(TOKEN + '\n')  # as `kubectl create secret --from-file` leaves it
    with serving(tmp_path, '--token-file', str(secret)) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get('/livez').json() == {'status': 'alive'} and c.get('/readyz').json() == {'status': 'ready'}
        r = c.get(f'{API}/tasks')
        assert r.status_code == 401 and r.headers['www-authenticate'] == 'Bearer'
        assert c.get(f'{API}/tasks', headers=WRONG).status_code == 401
        assert c.get(f'{API}/tasks', headers=OK).status_code == 200 and c.get('/health', headers=OK).status_code == 200
    log = (tmp_path / 'server.err').read_text()
    assert 'bearer token required' in log and 'GET /api/training/tasks' in log and TOKEN not in log


def test_serve_without_a_token_on_loopback_warns_once(tmp_path):
    with serving(tmp_path) as url:
        assert httpx.get(f'{url}/api/training/tasks', timeout=10).status_code == 200  # as before: open on loopback
    log = (tmp_path / 'server.err').read_text()
    assert log.count('the API has no authentication') == 1, log[-3000:]
