"""The REST server against hostile or careless clients (issue 22, items 5-7): results a page at a time, strict and
bounded request bodies, short 422s, JSON-only writes, an allow-list of Host names, documentation pages without a CDN,
and a clear error for a home folder that cannot be written.

In-process (FastAPI's TestClient, an in-memory store, one-episode stub jobs), except one uvicorn on 127.0.0.1 in a
thread and two short `lwmecps-nb` subprocesses that stop before any server starts; every wait is bounded."""
import contextlib
import json
import os
import subprocess
import sys

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from conftest import ROOT
from test_api_auth import live  # the app on a loopback port, uvicorn in a thread
from lwmecps_nb.api import MAX_DEPTH, MAX_RESULTS_LIMIT, RESULTS_LIMIT, create_app
from lwmecps_nb.core import Settings, get_settings
from lwmecps_nb.runner import TaskRunner
from lwmecps_nb.store import MemoryTaskStore
from lwmecps_nb.tracking import Tracker

API = '/api/training'
OID = '64f1b2a3c9d4e5f6a7b8c9d0'
JSON = {'content-type': 'application/json'}


def _one_episode(ctx):
    ctx.callback({'episode_reward': -1.0})
    return {'stub': True}


@contextlib.contextmanager
def client(**kw):
    "A TestClient on a fresh in-memory app, addressed as http://127.0.0.1 (a name the app answers by default)."
    runner = TaskRunner(MemoryTaskStore(), max_concurrent=1, tracker=Tracker(mode='disabled'), recover=False,
                        jobs={k: _one_episode for k in ('training', 'transfer', 'meta')})
    try:
        with TestClient(create_app(store=runner.store, runner=runner, settings=Settings(), **kw),
                        base_url='http://127.0.0.1') as c:
            c.runner = runner
            yield c
    finally: runner.shutdown()


def _deep(n, leaf=1):
    for _ in range(n): leaf = {'a': leaf}
    return leaf


# --- item 5: results a page at a time ------------------------------------------------------------------------------

def test_results_come_a_page_at_a_time_and_a_client_reads_every_row():
    # before: no limit by default (all 2,500 rows at once), no next_skip, and limit up to 100,000
    with client() as c:
        tid = c.post(f'{API}/tasks', json={'env_config': 'tiny', 'total_episodes': 2500}).json()['id']
        c.runner.store.record_episodes('training', tid, [(e, {'episode_reward': float(e)}) for e in range(1, 2501)])
        first = c.get(f'{API}/tasks/{tid}/results').json()
        assert len(first['results']) == RESULTS_LIMIT == 1000 and first['next_skip'] == 1000
        assert (first['skip'], first['limit']) == (0, 1000)
        assert c.get(f'{API}/tasks/{tid}/results', params={'limit': MAX_RESULTS_LIMIT + 1}).status_code == 422
        assert len(c.get(f'{API}/tasks/{tid}/results', params={'limit': MAX_RESULTS_LIMIT}).json()['results']) == 2500
        rows, skip, pages = [], 0, 0
        while skip is not None and pages < 10:  # a client following next_skip
            page = c.get(f'{API}/tasks/{tid}/results', params={'skip': skip, 'metrics': 'false'}).json()
            rows += page['results']; skip = page['next_skip']; pages += 1
        assert pages == 3 and [r['episode'] for r in rows] == list(range(1, 2501))
        last = c.get(f'{API}/tasks/{tid}/results', params={'skip': 2000, 'limit': 500}).json()
        assert len(last['results']) == 500 and last['next_skip'] is None  # exactly the last rows: no page follows
        doc = c.get('/openapi.json').json()['paths'][f'{API}/tasks/{{task_id}}/results']['get']
        limit = next(p for p in doc['parameters'] if p['name'] == 'limit')['schema']
        assert (limit['default'], limit['maximum']) == (1000, 10_000) and 'next_skip' in doc['description']


# --- item 6: strict, bounded bodies; short 422s ---------------------------------------------------------------------

TRANSFER = {'source_task_id': OID, 'target_env_config': 'tiny'}
EVALUATION = {'model_task_id': OID, 'env_config': 'tiny'}


@pytest.mark.parametrize('path,body,field', [
    ('transfer-tasks', {**TRANSFER, 'total_episodes': True}, 'total_episodes'),
    ('transfer-tasks', {**TRANSFER, 'total_episodes': 5.0}, 'total_episodes'),
    ('transfer-tasks', {**TRANSFER, 'frozen_layers': [True]}, 'frozen_layers'),
    ('transfer-tasks', {**TRANSFER, 'learning_rate': '0.1'}, 'learning_rate'),
    ('transfer-tasks', {**TRANSFER, 'target_env_config': 'cluster-zz'}, 'target_env_config'),
    ('evaluation-tasks', {**EVALUATION, 'seed': True}, 'seed'),
    ('evaluation-tasks', {**EVALUATION, 'total_episodes': '5'}, 'total_episodes'),
    ('evaluation-tasks', {**EVALUATION, 'total_episodes': 2.0}, 'total_episodes'),
])
def test_numbers_and_booleans_are_strict(path, body, field):
    # before: True, 5.0 and '5' passed as integers (the answer was the missing source task's 404)
    with client() as c:
        r = c.post(f'{API}/{path}', json=body)
        assert r.status_code == 422, r.text
        assert [e['loc'] for e in r.json()['detail']][0][:2] == ['body', field], r.text


@pytest.mark.parametrize('path,body,field', [
    ('tasks', {'env_config': {'cluster': _deep(900)}}, 'env_config'),
    ('meta-tasks', {'task_distribution': {'kubernetes_scaling': _deep(900)}}, 'task_distribution'),
    ('transfer-tasks', {**TRANSFER, 'target_env_config': {'cluster': _deep(900)}}, 'target_env_config'),
    ('evaluation-tasks', {**EVALUATION, 'env_config': {'cluster': _deep(900)}}, 'env_config'),
])
def test_deeply_nested_free_form_fields_are_refused_naming_the_field(path, body, field):
    # before: a message about an unknown key or family, and the 900 levels echoed back whole
    with client() as c:
        r = c.post(f'{API}/{path}', json=body)
        assert r.status_code == 422, r.text
        err = r.json()['detail'][0]
        assert err['loc'] == ['body', field] and f'nested more than {MAX_DEPTH} levels deep' in err['msg'], err
        assert len(r.content) < 2000


@pytest.mark.parametrize('path,raw,field,where', [
    ('tasks', '{"env_config": {"cluster": "tiny", "max_episode_steps": NaN}}', 'env_config', 'max_episode_steps'),
    ('tasks', '{"env_config": {"cluster": "tiny", "x": [1, Infinity]}}', 'env_config', 'x[1]'),
    ('meta-tasks', '{"task_distribution": {"load_balancing": {"latency_threshold": -Infinity}}}', 'task_distribution',
     'load_balancing.latency_threshold'),
    ('transfer-tasks', '{"source_task_id": "%s", "target_env_config": {"cluster": "tiny", "start": NaN}}' % OID,
     'target_env_config', 'start'),
    ('transfer-tasks', '{"source_task_id": "%s", "target_env_config": "tiny", "learning_rate": NaN}' % OID,
     'learning_rate', None),
    ('meta-tasks', '{"task_distribution": {"kubernetes_scaling": {"n": 1180591620717411303424}}}', 'task_distribution',
     'kubernetes_scaling.n'),
])
def test_non_finite_and_oversized_numbers_are_refused_naming_the_field(path, raw, field, where):
    # before: a 503 (the database refused the document), or "Out of range float values are not JSON compliant"
    with client() as c:
        r = c.post(f'{API}/{path}', content=raw, headers=JSON)
        assert r.status_code == 422, r.text
        err = r.json()['detail'][0]
        assert err['loc'][:2] == ['body', field], err
        if where: assert f'{field}.{where}' in err['msg'], err


def test_a_422_echoes_only_a_short_prefix_of_the_input():
    # before: FastAPI echoed the whole input (a 500 kB name came back as a 500 kB answer)
    with client() as c:
        r = c.post(f'{API}/tasks', json={'name': 'x' * 500_000})
        assert r.status_code == 422 and len(r.content) < 2000, len(r.content)
        err = r.json()['detail'][0]
        assert err['loc'] == ['body', 'name'] and 'at most 200 characters' in err['msg']
        assert err['input'].startswith('"xxxx') and '500002 characters' in err['input']
        r = c.post(f'{API}/tasks', json={'k' * 300_000: 1})  # an unknown field: its name is in `loc`
        assert r.status_code == 422 and len(r.content) < 2000 and r.json()['detail'][0]['type'] == 'extra_forbidden'
        r = c.post(f'{API}/tasks', json={'name': 'short', 'total_episodes': 0})  # a short input: echoed as it is
        assert r.json()['detail'][0]['input'] == 0


# --- item 7: JSON-only writes, allowed Host names, documentation without a CDN, the home folder ---------------------

def test_a_write_must_be_json():
    # before: a text/plain POST (a cross-site form, or fetch without a preflight) started a task
    with client() as c:
        tid = c.post(f'{API}/tasks', json={'env_config': 'tiny'}).json()['id']
        r = c.post(f'{API}/tasks/{tid}/start', content=b'', headers={'content-type': 'text/plain'})
        assert r.status_code == 415 and 'application/json' in r.json()['detail'], r.text
        assert c.get(f'{API}/tasks/{tid}').json()['state'] == 'pending'
        for ctype in ('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x'):
            r = c.post(f'{API}/tasks', content=b'{"env_config": "tiny"}', headers={'content-type': ctype})
            assert r.status_code == 415, (ctype, r.status_code)
        assert c.post(f'{API}/tasks', content=b'{"env_config": "tiny"}').status_code == 415  # a body, no type
        assert c.get(f'{API}/tasks').json()['total'] == 1  # none of them made a task
        ok = c.post(f'{API}/tasks', content=b'{"env_config": "tiny"}',
                    headers={'content-type': 'application/json; charset=utf-8'})
        assert ok.status_code == 201
        assert c.post(f'{API}/tasks/{tid}/start').status_code == 200  # no body, no content type: as always
        assert c.delete(f"{API}/tasks/{ok.json()['id']}").status_code == 204


def test_only_the_allowed_host_names_are_answered():
    # before: any Host header was answered (DNS rebinding reached the API)
    with client() as c:
        assert c.get(f'{API}/tasks', headers={'host': 'evil.example'}).status_code == 400
        assert c.post(f'{API}/tasks', json={}, headers={'host': 'evil.example:8010'}).status_code == 400
        assert c.get('/docs', headers={'host': 'evil.example'}).status_code == 400
        for host in ('127.0.0.1:8010', 'localhost', 'LOCALHOST:1', '[::1]:8010'):
            assert c.get(f'{API}/tasks', headers={'host': host}).status_code == 200, host
        for probe in ('/livez', '/readyz'):  # a kubelet probes by the pod's IP address
            assert c.get(probe, headers={'host': '10.1.2.3:8010'}).status_code == 200
    with client(allowed_hosts=['lwmecps-nb', '*.example.org']) as c:
        assert c.get(f'{API}/tasks').status_code == 400  # 127.0.0.1 is no longer one of its names
        assert c.get(f'{API}/tasks', headers={'host': 'lwmecps-nb:8010'}).status_code == 200
        assert c.get(f'{API}/tasks', headers={'host': 'api.example.org'}).status_code == 200
    with pytest.raises(ValueError, match='allowed_hosts'): create_app(store=MemoryTaskStore(), allowed_hosts=['a:80'])


def test_docs_pages_load_their_files_from_the_server():
    # before: /docs and /redoc loaded Swagger UI and ReDoc from a CDN, unpinned
    with client() as c:
        for page, asset in (('/docs', 'swagger-ui-bundle.js'), ('/docs', 'swagger-ui.css'),
                            ('/redoc', 'redoc.standalone.js')):
            html = c.get(page).text
            assert f'/docs-assets/{asset}' in html and 'cdn.' not in html and 'fonts.googleapis' not in html, page
            r = c.get(f'/docs-assets/{asset}')
            assert r.status_code == 200 and len(r.content) > 100_000, asset


def test_over_real_http_a_browser_request_from_elsewhere_is_refused():
    # before: 201 for the text/plain create, and 200 for the rebound Host
    runner = TaskRunner(MemoryTaskStore(), tracker=Tracker(mode='disabled'), recover=False,
                        jobs={k: _one_episode for k in ('training', 'transfer', 'meta')})
    try:
        with live(create_app(store=runner.store, runner=runner, settings=Settings())) as url, \
                httpx.Client(base_url=url, timeout=30) as c:
            plain = c.post(f'{API}/tasks', content=b'{"env_config": "tiny"}', headers={'content-type': 'text/plain'})
            assert plain.status_code == 415
            assert c.get(f'{API}/tasks', headers={'host': 'attacker.example'}).status_code == 400
            assert c.get(f'{API}/tasks').json()['total'] == 0  # the Host 127.0.0.1:PORT is answered
            assert c.get('/docs').status_code == 200 and c.get('/docs-assets/swagger-ui.css').status_code == 200
    finally: runner.shutdown()


def test_the_deployment_names_the_service_among_its_hosts():
    # before: no LWMECPS_ALLOWED_HOSTS, so the in-cluster clients' Host (the Service's name) would be refused
    docs = yaml.safe_load_all((ROOT / 'deploy' / 'kubernetes' / 'deployment.yaml').read_text())
    deployment = next(d for d in docs if d and d['kind'] == 'Deployment')
    api = deployment['spec']['template']['spec']['containers'][0]
    env = {e['name']: e.get('value') for e in api['env']}
    hosts = get_settings({'LWMECPS_ALLOWED_HOSTS': env['LWMECPS_ALLOWED_HOSTS']}).allowed_hosts
    service = yaml.safe_load((ROOT / 'deploy' / 'kubernetes' / 'service.yaml').read_text())['metadata']
    assert {service['name'], f"{service['name']}.{service['namespace']}.svc", 'localhost'} <= set(hosts), hosts


@pytest.mark.parametrize('argv', [['db', 'start'], ['serve', '--port', '1']])
def test_an_unwritable_home_is_one_clear_line(argv):
    # before: a 49-line traceback (exit status 1, or uvicorn's 3 for serve)
    env = {**os.environ, 'LWMECPS_HOME': '/proc/lwmecps-home'}  # no one can create a folder there, root included
    for k in ('MONGODB_URL', 'LWMECPS_API_TOKEN', 'LWMECPS_API_TOKEN_FILE'): env.pop(k, None)
    cmd = 'import sys; from lwmecps_nb.cli import main; sys.exit(main(sys.argv[1:]))'
    r = subprocess.run([sys.executable, '-c', cmd, *argv], env=env, capture_output=True, text=True,
                       timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert 'Traceback' not in r.stderr and len(lines) == 1, r.stderr
    assert lines[0].startswith('lwmecps-nb: error: LWMECPS_HOME=/proc/lwmecps-home is not a folder') and \
        'set LWMECPS_HOME to a writable folder' in lines[0], lines[0]
