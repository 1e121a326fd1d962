"""The Kubernetes manifests under deploy/kubernetes: well formed, and RBAC that grants exactly the API calls the backend makes."""
import re

import numpy as np
import yaml

from conftest import ROOT

DEPLOY = ROOT / 'deploy' / 'kubernetes'


def _docs():
    return [d for p in sorted(DEPLOY.glob('*.yaml')) for d in yaml.safe_load_all(p.read_text()) if d]


def _calls_of_an_episode():
    "(apiGroup, resource, verb) of every request KubernetesCluster makes over an episode on the test server."
    from kubernetes import client
    from lwmecps_nb.kube import KubernetesCluster, SimulatorWindowMetrics, TestServerClock
    from lwmecps_nb.kube_testing import KubeTestServer
    from lwmecps_nb.tasks import preset
    spec = preset('cluster-a')
    rng = np.random.default_rng(0)
    with KubeTestServer(spec, simulate=True, start=0) as srv:
        b = KubernetesCluster(spec, SimulatorWindowMetrics(srv.url), api_client=client.ApiClient(srv.client_configuration()),
                              clock=TestServerClock(srv.url), poll_s=0.01)
        b.reset(seed=0)
        for _ in range(3): b.step(rng.integers(0, 3, (spec.n_deployments, spec.n_nodes)))
        b.close()
        requests = list(srv.requests)
    verbs = {('GET', False): 'list', ('GET', True): 'get', ('POST', False): 'create', ('PATCH', True): 'patch', ('PUT', True): 'update', ('DELETE', True): 'delete'}
    calls = set()
    for method, path in requests:
        if path.startswith('/_lwmecps/') or path.startswith('/version'): continue
        m = re.fullmatch(r'/api(?:s/(?P<group>[^/]+))?/v1/(?:namespaces/[^/]+/)?(?P<res>[a-z]+)(?:/(?P<name>[^/]+))?(?P<sub>/scale)?', path)
        assert m, path
        resource = m['res'] + ('/scale' if m['sub'] else '')
        calls.add((m['group'] or '', resource, verbs[(method, bool(m['name']))]))
    return calls


def _rules(kind):
    out = set()
    for d in _docs():
        if d['kind'] == kind:
            for r in d['rules']:
                out |= {(g, res, v) for g in r['apiGroups'] for res in r['resources'] for v in r['verbs']}
    return out


def test_manifests_are_well_formed():
    docs = _docs()
    kinds = {d['kind'] for d in docs}
    assert {'Deployment', 'Service', 'ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding'} <= kinds
    dep = next(d for d in docs if d['kind'] == 'Deployment')
    pod = dep['spec']['template']['spec']
    assert pod['serviceAccountName'] == 'lwmecps-nb' and dep['spec']['selector']['matchLabels'].items() <= dep['spec']['template']['metadata']['labels'].items()
    assert pod['containers'][0]['readinessProbe']['httpGet']['path'] == '/health'
    assert next(d for d in docs if d['kind'] == 'Service')['spec']['ports'][0]['port'] == 8010
    for b in (d for d in docs if d['kind'].endswith('Binding')):
        assert b['subjects'][0]['name'] == 'lwmecps-nb'


def test_rbac_grants_exactly_what_the_backend_calls():
    calls = _calls_of_an_episode()
    cluster_wide, namespaced = _rules('ClusterRole'), _rules('Role')
    assert cluster_wide == {('', 'nodes', 'list')}  # nothing cluster-wide beyond reading nodes
    assert cluster_wide | namespaced == calls, f'RBAC {sorted(cluster_wide | namespaced)} vs calls {sorted(calls)}'
    role = next(d for d in _docs() if d['kind'] == 'Role')
    assert role['metadata']['namespace'] == 'lwmecps'
