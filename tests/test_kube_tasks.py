"""Training, transfer, meta and evaluation tasks on the Kubernetes backend, through the REST server over real HTTP.

The "cluster" is the simulating `KubeTestServer` on loopback, reached by the server process through the official
client; it simulates pods that serve 30% slower than the cluster model says, so the evaluation's sim-to-real gap
is real and has a known sign."""
from dataclasses import replace

import httpx
import pytest

from test_api import API, _until_done, serving

SLOWER = 0.7  # the test cluster's pods serve at 70% of the modelled rate


def _slower(spec):
    return replace(spec, service_rate=tuple(spec.per_deployment('service_rate') * SLOWER))


def _on_cluster(url, source, steps=6):
    return {**source, 'backend': 'kubernetes', 'backend_options': {'url': url, 'poll_s': 0.01}, 'max_episode_steps': steps}


def _run_to_end(api, route, body):
    "Create a task under `route` (201), start it, wait for its end; returns (its id, its final document)."
    r = api.post(f'{API}/{route}', json=body)
    assert r.status_code == 201, r.text
    tid = r.json()['id']
    api.post(f'{API}/{route}/{tid}/start').raise_for_status()
    return tid, _until_done(api, f'{API}/{route}/{tid}')


def _writes(k8s):
    return sum(1 for method, path in k8s.requests if method == 'PATCH' and path.endswith('/scale'))


@pytest.fixture(scope='module')
def api(tmp_path_factory):
    with serving(tmp_path_factory.mktemp('kube-tasks')) as url:
        with httpx.Client(base_url=url, timeout=60) as c: yield c


def test_training_transfer_and_evaluation_on_the_cluster(api):
    from lwmecps_nb.kube_testing import KubeTestServer
    from lwmecps_nb.tasks import preset
    with KubeTestServer(_slower(preset('cluster-a')), simulate=True, start=0) as k8s:
        cluster = _on_cluster(k8s.url, {'cluster': 'cluster-a'})
        # PPO trained on the cluster itself: every window goes through the official client
        t = api.post(f'{API}/tasks', json={'name': 'on the cluster', 'env_config': cluster, 'total_episodes': 3,
                                           'hyperparameters': {'n_steps': 6}})
        assert t.status_code == 201, t.text
        before = _writes(k8s)
        api.post(f"{API}/tasks/{t.json()['id']}/start").raise_for_status()
        done = _until_done(api, f"{API}/tasks/{t.json()['id']}")
        assert done['state'] == 'completed', done
        assert _writes(k8s) > before  # it really scaled deployments on the cluster
        res = api.get(f"{API}/tasks/{t.json()['id']}/results").json()
        assert len(res['results']) == 3 and done['summary']['model_layers'] >= 2
        assert done['config']['env_config']['backend'] == 'kubernetes'

        # a model trained on the simulator, transferred to the cluster
        sim = api.post(f'{API}/tasks', json={'env_config': 'cluster-a', 'total_episodes': 4,
                                             'hyperparameters': {'num_envs': 4}}).json()
        api.post(f"{API}/tasks/{sim['id']}/start").raise_for_status()
        assert _until_done(api, f"{API}/tasks/{sim['id']}")['state'] == 'completed'
        tr, tdone = _run_to_end(api, 'transfer-tasks', {'source_task_id': sim['id'], 'target_env_config': cluster,
                                                        'total_episodes': 2})
        assert tdone['state'] == 'completed', tdone
        assert len(api.get(f'{API}/transfer-tasks/{tr}/results').json()['results']) == 2

        # the simulator-trained model run on the cluster for 8 windows, beside the simulator's prediction
        ev, edone = _run_to_end(api, 'evaluation-tasks', {'model_task_id': sim['id'], 'env_config': cluster,
                                                          'total_episodes': 8})
        assert edone['state'] == 'completed', edone
        rows = api.get(f'{API}/evaluation-tasks/{ev}/results').json()['results']
        assert [r['episode'] for r in rows] == list(range(1, 9))
        for m in ('latency_ms', 'sla_violations', 'replicas', 'reward'):
            assert {f'eval/{m}_live', f'eval/{m}_sim'} <= set(rows[0]['metrics'])
        gap = edone['summary']['sim_to_real_gap']
        # slower pods: the cluster's latency is above the simulator's prediction, its reward below
        assert gap['latency_ms']['gap'] > 0 and gap['reward']['gap'] < 0, gap
        assert gap['latency_ms']['live'] > gap['latency_ms']['sim']


def test_meta_task_adapts_on_the_cluster(api):
    from lwmecps_nb.kube_testing import KubeTestServer
    from lwmecps_nb.meta_rl import ClusterTaskSource
    task = ClusterTaskSource().held_out()[0]
    with KubeTestServer(task.spec, simulate=True, start=0) as k8s:
        body = {'meta_algorithm': 'fomaml', 'meta_batch_size': 2, 'trajectories': 2, 'held_out_tasks': 0, 'test_steps': 1,
                'total_episodes': 2, 'env_config': _on_cluster(k8s.url, {'task': task.to_dict()}, steps=4)}
        _, done = _run_to_end(api, 'meta-tasks', body)
        assert done['state'] == 'completed', done
        s = done['summary']
        assert s['target_backend'] == 'kubernetes' and len(s['target_returns_after_steps']) == 2
        assert s['target_windows'] == 2 * 2 * 4 and _writes(k8s) > 0


def test_cluster_env_configs_are_checked_at_create(api):
    bad = [({'cluster': 'cluster-a', 'backend': 'nope'}, 'backend'),
           ({'cluster': 'cluster-a', 'backend_options': {'url': 'http://127.0.0.1:1'}}, 'backend_options'),
           ({'cluster': 'cluster-a', 'backend': 'kubernetes'}, 'backend_options'),
           ({'cluster': 'cluster-a', 'backend': 'kubernetes', 'backend_options': {'colour': 'red'}}, 'colour')]
    for env_config, field in bad:
        r = api.post(f'{API}/tasks', json={'env_config': env_config, 'total_episodes': 1})
        assert r.status_code == 422 and field in r.text, (env_config, r.text)
    r = api.post(f'{API}/evaluation-tasks', json={'model_task_id': '0' * 24, 'env_config': 'cluster-a'})
    assert r.status_code == 404, r.text
    # a meta-learned policy must fit the target cluster: cluster-a's max_pods differs from the distribution's
    r = api.post(f'{API}/meta-tasks', json={'env_config': {'cluster': 'cluster-a'}, 'total_episodes': 1})
    assert r.status_code == 422 and 'max_pods' in r.text, r.text
