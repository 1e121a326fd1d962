"""kubectl against KubeTestServer: get, scale and patch of nodes, pods and deployments, as a user runs them.

Each test starts a simulating test server on loopback (a random port) with the backend's deployments, writes a
kubeconfig for it, runs a kubectl binary as a subprocess and checks the effect through the server's and the
simulator's state and through the official Python client.

Which kubectl: `KUBECTL` (one path, or several separated by `os.pathsep`, e.g. the PATH one and Debian's
kubernetes-client extracted from its .deb), else the `kubectl` on PATH. Every one found is tested. With none the
tests skip, unless `LWMECPS_REQUIRE_KUBECTL=1` (set by `.ci/run`, which installs Debian's kubernetes-client), where
they fail.
"""
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml

REQUIRED = os.environ.get('LWMECPS_REQUIRE_KUBECTL') == '1'


def _kubectls() -> list:
    "The kubectl binaries to test: those named by KUBECTL, else the one on PATH (none: [None])."
    named = [p for p in os.environ.get('KUBECTL', '').split(os.pathsep) if p]
    found = named or [p for p in [shutil.which('kubectl')] if p]
    return found or [None]


def _version(kubectl) -> str:
    "The client version a binary reports, for the test id (its path when it does not run)."
    if kubectl is None: return 'no-kubectl'
    try:
        out = subprocess.run([kubectl, 'version', '--client'], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return kubectl
    m = re.search(r'v\d+\.\d+\.\d+[\w.+-]*', out)
    return f'{m.group(0) if m else "unknown"}:{kubectl}'


KUBECTLS = _kubectls()


@pytest.fixture(params=KUBECTLS, ids=[_version(k) for k in KUBECTLS])
def kubectl(request):
    path = request.param
    if path is None:
        msg = 'no kubectl found: install one (apt-get install kubernetes-client) or set KUBECTL'
        if REQUIRED: pytest.fail(msg + ' (LWMECPS_REQUIRE_KUBECTL=1)')
        pytest.skip(msg)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f'KUBECTL={path} is not an executable file')
    return path


class Cluster:
    "A simulating KubeTestServer with the backend's deployments (after its reset), and kubectl pointed at it."
    def __init__(self, kubectl, tmp_path):
        from kubernetes import client
        from lwmecps_nb.kube import KubernetesCluster, SimulatorWindowMetrics, TestServerClock
        from lwmecps_nb.kube_testing import KubeTestServer
        from lwmecps_nb.tasks import preset
        self.spec = preset('cluster-a')
        self.srv = KubeTestServer(self.spec, simulate=True, start=10).start()
        self.api = client.ApiClient(self.srv.client_configuration())
        self.core, self.apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        self.backend = KubernetesCluster(self.spec, SimulatorWindowMetrics(self.srv.url), api_client=self.api,
                                         clock=TestServerClock(self.srv.url), poll_s=0.01)
        self.backend.reset(seed=0)
        self.kubectl, self.tmp = kubectl, tmp_path
        self.kubeconfig = self.srv.write_kubeconfig(tmp_path / 'kubeconfig')

    def run(self, *args, ok=True) -> subprocess.CompletedProcess:
        "kubectl ARGS against the server (its own HOME and cache: nothing of the user's is read or written)."
        env = {'HOME': str(self.tmp), 'PATH': os.environ.get('PATH', '/usr/bin:/bin')}
        cmd = [self.kubectl, '--kubeconfig', str(self.kubeconfig), '--cache-dir', str(self.tmp / 'cache'), *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        if ok: assert r.returncode == 0, f'kubectl {" ".join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}'
        return r

    def where(self, replicas:int, k:int=0):
        "(d, n, deployment name, service, node) of the k-th backend deployment that has `replicas` after the reset."
        from lwmecps_nb.cluster import nearest_node_replicas
        d, n = np.argwhere(nearest_node_replicas(self.spec) == replicas)[k]
        return d, n, self.backend.names[d][n], self.spec.deployments[d], self.spec.node_names[n]

    def close(self):
        self.backend.close(); self.srv.stop()


@pytest.fixture
def cluster(kubectl, tmp_path):
    c = Cluster(kubectl, tmp_path)
    yield c
    c.close()


def _rows(out: str) -> list:
    "A kubectl table's rows as lists of cells (header first)."
    return [line.split() for line in out.strip().splitlines()]


def test_get_nodes(cluster):
    rows = _rows(cluster.run('get', 'nodes').stdout)
    assert rows[0] == ['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION']
    assert [r[0] for r in rows[1:]] == cluster.spec.node_names
    assert {r[1] for r in rows[1:]} == {'Ready'} and {r[4] for r in rows[1:]} == {'v1.30.0'}
    one = _rows(cluster.run('get', 'node', cluster.spec.node_names[1]).stdout)
    assert [r[0] for r in one[1:]] == [cluster.spec.node_names[1]]
    missing = cluster.run('get', 'node', 'nope', ok=False)
    assert missing.returncode != 0 and 'nodes "nope" not found' in missing.stderr


def test_get_pods_with_a_selector(cluster):
    d, n, name, svc, node = cluster.where(1)
    rows = _rows(cluster.run('get', 'pods', '-l', f'lwmecps/service={svc},lwmecps/node={node}').stdout)
    assert rows[0] == ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE']
    assert [r[:3] for r in rows[1:]] == [[f'{name}-0', '1/1', 'Running']]  # the backend's initial replica
    everything = _rows(cluster.run('get', 'pods', '-n', 'lwmecps').stdout)[1:]
    assert len(everything) == int(cluster.backend._pods()[0].sum()) == cluster.spec.n_deployments
    other = cluster.run('get', 'pods', '-l', f'lwmecps/service in ({svc}),lwmecps/node!={node}')
    assert other.stdout.strip() == '' and 'No resources found in lwmecps namespace' in other.stderr
    assert 'No resources found in default namespace' in cluster.run('get', 'pods', '-n', 'default').stderr


def test_get_deployments_as_json_and_yaml(cluster):
    listed = json.loads(cluster.run('get', 'deployments', '-o', 'json').stdout)
    assert sorted(d['metadata']['name'] for d in listed['items']) == sorted(sum(cluster.backend.names, []))
    d, n, name, svc, node = cluster.where(0, 5)
    item = next(d for d in listed['items'] if d['metadata']['name'] == name)
    assert item['metadata']['labels']['lwmecps/service'] == svc
    assert item['spec']['template']['spec']['nodeSelector'] == {'kubernetes.io/hostname': node}
    one = yaml.safe_load(cluster.run('get', 'deployment', name, '-o', 'yaml').stdout)
    assert (one['kind'], one['metadata']['name']) == ('Deployment', name)
    assert one['spec']['replicas'] == cluster.apps.read_namespaced_deployment(name, 'lwmecps').spec.replicas
    rows = _rows(cluster.run('get', 'deployments', '-l', f'lwmecps/service={svc}').stdout)
    assert rows[0] == ['NAME', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'AGE']
    assert sorted(r[0] for r in rows[1:]) == sorted(cluster.backend.names[d])


def test_scale_deployment(cluster):
    d, n, name, svc, node = cluster.where(0, 3)
    assert cluster.srv._requested()[d, n] == 0
    assert 'scaled' in cluster.run('scale', 'deployment', name, '--replicas=3').stdout
    assert cluster.srv.deployments[('lwmecps', name)]['spec']['replicas'] == 3  # the server's object
    assert cluster.srv._requested()[d, n] == 3  # what the simulator is asked for
    assert cluster.apps.read_namespaced_deployment_scale(name, 'lwmecps').spec.replicas == 3  # the official client
    pods = cluster.core.list_namespaced_pod('lwmecps', label_selector=f'lwmecps/service={svc},lwmecps/node={node}')
    assert len(pods.items) == 3
    state = cluster.srv.advance_window()  # the simulator runs the window with them
    assert state.running[d, n] + state.pending[d, n] == 3
    assert _rows(cluster.run('get', 'deployment', name).stdout)[1][:2] == [name, f'{int(state.running[d, n])}/3']
    cluster.run('scale', 'deployment', name, '--replicas=0')  # 0 means none
    assert cluster.apps.read_namespaced_deployment(name, 'lwmecps').spec.replicas == 0
    wrong = cluster.run('scale', 'deployment', name, '--current-replicas=5', '--replicas=1', ok=False)
    assert wrong.returncode != 0 and cluster.srv.deployments[('lwmecps', name)]['spec']['replicas'] == 0


def test_patch_deployment(cluster):
    d, n, name, svc, node = cluster.where(0, 7)
    gen = cluster.apps.read_namespaced_deployment(name, 'lwmecps').metadata.generation
    assert 'patched' in cluster.run('patch', 'deployment', name, '--type', 'merge', '-p', '{"spec":{"replicas":2}}').stdout
    dep = cluster.apps.read_namespaced_deployment(name, 'lwmecps')
    assert (dep.spec.replicas, dep.metadata.generation) == (2, gen + 1)
    assert cluster.srv._requested()[d, n] == 2
    cluster.run('patch', 'deployment', name, '-p', '{"metadata":{"labels":{"tier":"edge"}}}')  # strategic merge
    dep = cluster.apps.read_namespaced_deployment(name, 'lwmecps')
    assert dep.metadata.labels['tier'] == 'edge' and dep.metadata.labels['lwmecps/service'] == svc  # merged
    assert dep.metadata.generation == gen + 1  # labels are not the spec
    before = dep.spec.template.spec.containers[0]
    image = {'spec': {'template': {'spec': {'containers': [{'name': before.name, 'image': 'web:2'}]}}}}
    cluster.run('patch', 'deployment', name, '-p', json.dumps(image))  # strategic merge of the containers by name
    c = cluster.apps.read_namespaced_deployment(name, 'lwmecps').spec.template.spec.containers
    assert len(c) == 1 and c[0].image == 'web:2' and c[0].resources.requests == before.resources.requests
    cluster.run('patch', 'deployment', name, '--type', 'json', '-p', '[{"op":"replace","path":"/spec/replicas","value":1}]')
    assert cluster.apps.read_namespaced_deployment(name, 'lwmecps').spec.replicas == 1
    rows = _rows(cluster.run('get', 'deployments', '-l', 'tier=edge').stdout)
    assert [r[0] for r in rows[1:]] == [name]
    bad = cluster.run('patch', 'deployment', name, '--type', 'merge', '-p', '{"spec":{"replicas":-2}}', ok=False)
    assert bad.returncode != 0 and cluster.apps.read_namespaced_deployment(name, 'lwmecps').spec.replicas == 1


def test_patch_node(cluster):
    node = cluster.spec.node_names[2]
    assert 'patched' in cluster.run('patch', 'node', node, '-p', '{"metadata":{"labels":{"zone":"north"}}}').stdout
    labels = cluster.core.read_node(node).metadata.labels
    assert labels['zone'] == 'north' and labels['kubernetes.io/hostname'] == node  # merged
    assert [r[0] for r in _rows(cluster.run('get', 'nodes', '-l', 'zone=north').stdout)[1:]] == [node]
    cluster.run('patch', 'node', node, '--type', 'merge', '-p', '{"metadata":{"labels":{"zone":null}}}')
    assert 'zone' not in cluster.core.read_node(node).metadata.labels
    st = cluster.backend.step(np.ones((cluster.spec.n_deployments, cluster.spec.n_nodes), int))  # the backend still works
    assert st.running.sum() + st.pending.sum() == cluster.spec.n_deployments * cluster.spec.n_nodes
