"""The panels in remote mode against a live `lwmecps-nb serve` on loopback: the run starts on the server with exactly the
panel's settings, the curve's data grows while it runs, Stop ends it, a transfer starts from the server's model, and a
refusal from the server is a message in the panel."""
import time

import pytest

from test_api import _free_port, serving
from lwmecps_nb.tracking import Tracker
from lwmecps_nb.widgets import LocalBackend, MetaLearningPanel, RemoteBackend, TrainingPanel, TransferPanel


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    with serving(tmp_path_factory.mktemp('widgets-server')) as url: yield url


def _server_task(url, path, task_id):
    import httpx
    return httpx.get(f'{url}/api/training/{path}/{task_id}', timeout=10).json()


def test_training_panel_runs_on_the_server(server):
    p = TrainingPanel(backend=RemoteBackend(server), poll_s=0.2)
    assert p.mode.value == 'remote' and p.server_url.value == server
    p.env.value, p.episodes.value = 'tiny', 48
    p.hyper['num_envs'].value, p.hyper['learning_rate'].value, p.hyper['entropy_coef'].value = 4, 2e-3, 0.02
    p.run_button.click()
    assert p.task is not None, p.message.value
    seen = []
    while p.running:
        seen.append(len(p.rows)); time.sleep(0.05)
    r = p.wait(120)
    assert r['state'] == 'completed', r
    doc = _server_task(server, 'tasks', p.task['id'])
    assert doc['config']['hyperparameters'] == p.config['hyperparameters']
    assert doc['config']['hyperparameters']['learning_rate'] == 2e-3 and doc['config']['hyperparameters']['entropy_coef'] == 0.02
    assert doc['config']['env_config'] == 'tiny' and doc['total_episodes'] == 48
    assert len(p.curve('train/episode_reward')[1]) == 48
    assert len(set(seen)) > 2, seen  # polled more than once while it ran, the data growing
    assert 'mean_reward_last_10' in p.table.value


def test_stop_and_transfer_and_refusals_over_http(server):
    be = RemoteBackend(server)
    long = TrainingPanel(backend=be, poll_s=0.2)
    long.env.value, long.episodes.value, long.hyper['num_envs'].value = 'tiny', 100_000, 4
    assert long.run() is not None, long.message.value
    deadline = time.monotonic() + 60
    while len(long.rows) < 8 and time.monotonic() < deadline: time.sleep(0.1)
    long.stop_button.click()
    r = long.wait(60)
    assert r['state'] == 'cancelled' and 8 <= len(long.rows) < 100_000
    assert _server_task(server, 'tasks', long.task['id'])['state'] == 'cancelled'

    src = TrainingPanel(backend=be, poll_s=0.2)
    src.env.value, src.episodes.value, src.hyper['num_envs'].value = 'tiny', 16, 4
    assert src.run() is not None and src.wait(120)['state'] == 'completed'
    tp = TransferPanel(backend=be, poll_s=0.2)  # lists the server's completed training tasks, newest first
    assert tp.source.value == src.task['id'], (tp.source.options, tp.message.value)
    assert tp.source.value is not None, tp.message.value
    assert [v for _, v in tp.frozen.options] == [0, 1, 2]
    tp.target.value, tp.episodes.value, tp.transfer_type.value = 'tiny', 12, 'layer_wise'
    assert tp.frozen.value == (0, 1)
    assert tp.run() is not None, tp.message.value
    r = tp.wait(120)
    assert r is not None and r['state'] == 'completed', (r, tp.status.value, tp.message.value)
    assert len(tp.reference['scratch_returns']) == 12 and len(tp.curve('transfer/episode_reward')[1]) == 12
    assert _server_task(server, 'transfer-tasks', tp.task['id'])['config']['transfer_type'] == 'layer_wise'

    mp = MetaLearningPanel(backend=be)
    mp.algorithm.value, mp.implicit.value = 'maml', True
    assert mp.run() is None and 'cannot be combined' in mp.message.value  # the server's 422, shown in the panel
    mp.implicit.value, mp.episodes.value = False, 1_000_000
    assert mp.episodes.value == 100_000  # the control holds only what the API's model allows
    mp.distribution.value = '{"load_balancing": {"latency_threshold": -1}}'
    assert mp.run() is None and 'task_distribution.load_balancing.latency_threshold must be a positive finite number' in mp.message.value
    assert be.tasks('meta') == []


def test_unreachable_server_is_a_message():
    p = TrainingPanel(backend=RemoteBackend(f'http://127.0.0.1:{_free_port()}'))
    assert p.run() is None
    assert 'cannot reach the server' in p.message.value and p.task is None


def test_remote_default_is_where_serve_listens():
    from lwmecps_nb.cli import build_parser
    port = build_parser().parse_args(['serve']).port
    assert RemoteBackend().url == f'http://127.0.0.1:{port}'
    be = LocalBackend(tracker=Tracker(mode='disabled'))
    try: assert MetaLearningPanel(backend=be).server_url.value == f'http://127.0.0.1:{port}'  # what the mode toggle talks to
    finally: be.close()


def test_meta_panel_shows_the_advice_from_the_server(server):
    "At the document's inner_lr of 0.01 adaptation changes nothing: the server's task and the panel say so, with the cure."
    mp = MetaLearningPanel(backend=RemoteBackend(server), poll_s=0.2)
    mp.preset.value = 'load_balancing only'
    mp.episodes.value, mp.batch.value, mp.trajectories.value, mp.held_out.value, mp.steps.value = 2, 2, 2, 1, 1
    mp.inner_lr.value = 0.01
    assert mp.run() is not None, mp.message.value
    r = mp.wait(400)
    assert r is not None and r['state'] == 'completed', (r, mp.message.value)
    assert abs(r['summary']['fomaml/adaptation_accuracy']) < 0.2, r['summary']
    assert r['advice'][0]['problem'] == 'Low adaptation accuracy'
    assert '<b>Low adaptation accuracy</b>' in mp.advice.value and 'inner_lr (now 0.01)' in mp.advice.value, mp.advice.value
    assert _server_task(server, 'meta-tasks', mp.task['id'])['advice'] == r['advice']


def test_panels_send_the_token_to_a_protected_server(tmp_path, monkeypatch):
    "A server started with --token-file: without the token a panel says how to give it; with it (given, or from the environment) it runs."
    import secrets
    token = 'tok-' + secrets.token_urlsafe(16)
    (tmp_path / 'token').write_text(token + '\n')
    for k in ('LWMECPS_API_TOKEN', 'LWMECPS_API_TOKEN_FILE'): monkeypatch.delenv(k, raising=False)
    with serving(tmp_path, '--token-file', str(tmp_path / 'token')) as url:
        p = TrainingPanel(backend=RemoteBackend(url))
        assert p.run() is None and p.task is None
        assert 'requires its API token (401' in p.message.value and 'LWMECPS_API_TOKEN' in p.message.value and token not in p.message.value
        p = TrainingPanel(backend=RemoteBackend(url, token=token), poll_s=0.2)
        p.env.value, p.episodes.value, p.hyper['num_envs'].value = 'tiny', 8, 2
        assert p.run() is not None, p.message.value
        r = p.wait(120)
        assert r is not None and r['state'] == 'completed' and len(p.rows) == 8, (r, p.message.value)
        monkeypatch.setenv('LWMECPS_API_TOKEN', token)  # the default: the settings' token, read at each request
        assert [d['id'] for d in RemoteBackend(url).tasks('training')] == [p.task['id']]
        assert token not in repr(RemoteBackend(url))
