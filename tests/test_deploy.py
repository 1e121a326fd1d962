"""deploy/kubernetes and the Dockerfile: RBAC that grants exactly the API calls the backend makes; the kustomization
rendered by `kubectl kustomize` and every object validated against the Kubernetes API models (unknown fields fail);
the hardening (securityContext, probes, resources, the token Secret); the Dockerfile checked statically (no Docker
daemon here: the image is not built by the tests).

Which kubectl renders: `KUBECTL` (one path, or several separated by `os.pathsep`), else the `kubectl` on PATH; every
one found renders. With none the rendering tests skip, unless `LWMECPS_REQUIRE_KUBECTL=1` (set by `.ci/run`).
"""
import base64
import json
import os
import re
import shlex
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from conftest import ROOT

DEPLOY = ROOT / 'deploy' / 'kubernetes'
DOCKERFILE = ROOT / 'Dockerfile'
REQUIRED = os.environ.get('LWMECPS_REQUIRE_KUBECTL') == '1'
TOKEN = 'test-token-' + 'x' * 32  # what the tests write into api-token.txt (never a real one)
NAMESPACE = 'lwmecps'


def _docs():
    "The Kubernetes objects of the manifests as written (the kustomization itself is not one)."
    return [d for p in sorted(DEPLOY.glob('*.yaml')) if p.name != 'kustomization.yaml'
            for d in yaml.safe_load_all(p.read_text()) if d]


def _calls_of_an_episode():
    "(apiGroup, resource, verb) of every request KubernetesCluster makes over an episode on the test server."
    from kubernetes import client
    from lwmecps_nb.kube import KubernetesCluster, SimulatorWindowMetrics, TestServerClock
    from lwmecps_nb.kube_testing import KubeTestServer
    from lwmecps_nb.tasks import preset
    spec = preset('cluster-a')
    rng = np.random.default_rng(0)
    with KubeTestServer(spec, simulate=True, start=0) as srv:
        b = KubernetesCluster(spec, SimulatorWindowMetrics(srv.url),
                              api_client=client.ApiClient(srv.client_configuration()),
                              clock=TestServerClock(srv.url), poll_s=0.01)
        b.reset(seed=0)
        for _ in range(3): b.step(rng.integers(0, 3, (spec.n_deployments, spec.n_nodes)))
        b.close()
        requests = list(srv.requests)
    verbs = {('GET', False): 'list', ('GET', True): 'get', ('POST', False): 'create', ('PATCH', True): 'patch',
             ('PUT', True): 'update', ('DELETE', True): 'delete'}
    calls = set()
    for method, path in requests:
        if path.startswith('/_lwmecps/') or path.startswith('/version'): continue
        m = re.fullmatch(r'/api(?:s/(?P<group>[^/]+))?/v1/(?:namespaces/[^/]+/)?(?P<res>[a-z]+)'
                         r'(?:/(?P<name>[^/]+))?(?P<sub>/scale)?', path)
        assert m, path
        resource = m['res'] + ('/scale' if m['sub'] else '')
        calls.add((m['group'] or '', resource, verbs[(method, bool(m['name']))]))
    return calls


def _rules(kind, docs=None):
    out = set()
    for d in docs or _docs():
        if d['kind'] == kind:
            for r in d['rules']:
                out |= {(g, res, v) for g in r['apiGroups'] for res in r['resources'] for v in r['verbs']}
    return out


def test_manifests_are_well_formed():
    docs = _docs()
    kinds = {d['kind'] for d in docs}
    assert {'Namespace', 'Deployment', 'Service', 'ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole',
            'ClusterRoleBinding'} <= kinds
    dep = next(d for d in docs if d['kind'] == 'Deployment')
    pod = dep['spec']['template']['spec']
    assert pod['serviceAccountName'] == 'lwmecps-nb'
    assert dep['spec']['selector']['matchLabels'].items() <= dep['spec']['template']['metadata']['labels'].items()
    api = pod['containers'][0]
    assert api['readinessProbe']['httpGet']['path'] == '/readyz'  # the database too: leaves the endpoints, no restart
    assert api['livenessProbe']['httpGet']['path'] == '/livez'  # the process only: a database outage restarts nothing
    assert next(d for d in docs if d['kind'] == 'Service')['spec']['ports'][0]['port'] == 8010
    for b in (d for d in docs if d['kind'].endswith('Binding')):
        assert b['subjects'][0]['name'] == 'lwmecps-nb'
    kz = yaml.safe_load((DEPLOY / 'kustomization.yaml').read_text())
    assert sorted(kz['resources']) == sorted(p.name for p in DEPLOY.glob('*.yaml') if p.name != 'kustomization.yaml')
    assert kz['namespace'] == NAMESPACE


def test_rbac_grants_exactly_what_the_backend_calls():
    calls = _calls_of_an_episode()
    cluster_wide, namespaced = _rules('ClusterRole'), _rules('Role')
    assert cluster_wide == {('', 'nodes', 'list')}  # nothing cluster-wide beyond reading nodes
    assert cluster_wide | namespaced == calls, f'RBAC {sorted(cluster_wide | namespaced)} vs calls {sorted(calls)}'
    role = next(d for d in _docs() if d['kind'] == 'Role')
    assert role['metadata']['namespace'] == 'lwmecps'


def test_token_file_is_never_committed_nor_sent_to_the_image_builder():
    assert 'deploy/kubernetes/api-token.txt' in (ROOT / '.gitignore').read_text().split()
    for path in ('deploy/kubernetes/api-token.txt', '.git', '.venv', 'artifacts', 'docs/_site',
                 'lwmecps_nb/__pycache__', '.pytest_cache'):
        assert _docker_ignored(path), f'.dockerignore lets {path} into the build context'


# ---- kubectl kustomize, and validation against the Kubernetes API models ------------------------------------------

def _kubectls() -> list:
    "The kubectl binaries to render with: those named by KUBECTL, else the one on PATH (none: [None])."
    named = [p for p in os.environ.get('KUBECTL', '').split(os.pathsep) if p]
    found = named or [p for p in [shutil.which('kubectl')] if p]
    return found or [None]


def _need(kubectl):
    if kubectl is None:
        msg = 'no kubectl found: install one (apt-get install kubernetes-client) or set KUBECTL'
        if REQUIRED: pytest.fail(msg + ' (LWMECPS_REQUIRE_KUBECTL=1)')
        pytest.skip(msg)
    if not (os.path.isfile(kubectl) and os.access(kubectl, os.X_OK)):
        pytest.fail(f'KUBECTL={kubectl} is not an executable file')
    return kubectl


def _kustomize(kubectl, folder):
    return subprocess.run([kubectl, 'kustomize', str(folder)], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope='module', params=_kubectls(), ids=lambda k: k or 'no-kubectl')
def rendered(request, tmp_path_factory):
    "The kustomization rendered by one kubectl, from a copy of deploy/kubernetes that has an api-token.txt."
    kubectl = _need(request.param)
    folder = tmp_path_factory.mktemp('kustomize') / 'kubernetes'
    shutil.copytree(DEPLOY, folder, ignore=shutil.ignore_patterns('api-token.txt'))
    (folder / 'api-token.txt').write_text(TOKEN)
    r = _kustomize(kubectl, folder)
    assert r.returncode == 0, f'{kubectl} kustomize failed: {r.stderr}'
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert docs, r.stdout
    return docs


_LIST = re.compile(r'^(?:List\[(?P<a>.+)\]|list\[(?P<b>.+)\])$')
_DICT = re.compile(r'^(?:Dict\[str, (?P<a>.+)\]|dict\(str, (?P<b>.+)\))$')


def _model(name):
    from kubernetes.client import models
    return getattr(models, name, None)


def unknown_fields(data, klass:str, path:str='') -> list:
    "Every key of `data` (JSON, recursively) that the Kubernetes client's model `klass` does not have."
    if (m := re.fullmatch(r'Optional\[(.+)\]', klass)): klass = m[1]
    if (m := _LIST.match(klass)):
        if not isinstance(data, list): return [f'{path}: a list expected ({klass})']
        return [e for i, v in enumerate(data) for e in unknown_fields(v, m['a'] or m['b'], f'{path}[{i}]')]
    if (m := _DICT.match(klass)):
        if not isinstance(data, dict): return [f'{path}: a mapping expected ({klass})']
        return [e for k, v in data.items() for e in unknown_fields(v, m['a'] or m['b'], f'{path}.{k}')]
    model = _model(klass)
    if model is None: return []  # str, int, bool, object (int-or-string), bytes, datetime: the models' own checks
    if not isinstance(data, dict): return [f'{path}: an object expected ({klass})']
    attr_of = {json_name: attr for attr, json_name in model.attribute_map.items()}
    out = []
    for k, v in data.items():
        if k not in attr_of:
            out.append(f'{path}.{k}: not a field of {klass} (its fields: {", ".join(sorted(attr_of))})')
        else:
            out += unknown_fields(v, model.openapi_types[attr_of[k]], f'{path}.{k}')
    return out


def _model_name(doc) -> str:
    "The client's model of a manifest object: apiVersion apps/v1, kind Deployment -> V1Deployment."
    name = doc['apiVersion'].split('/')[-1].capitalize() + doc['kind']
    assert _model(name) is not None, f"{doc['kind']} {doc['metadata']['name']}: no model {name} in the client"
    return name


def validate(doc) -> object:
    "The object as the client's model (types and required fields checked); fails on a field the model does not know."
    from kubernetes.client import ApiClient
    name, what = _model_name(doc), f"{doc['kind']} {doc['metadata']['name']}"
    unknown = unknown_fields(doc, name, doc['kind'])
    assert not unknown, f'{what}: unknown fields (a typo?):\n' + '\n'.join(unknown)
    api = ApiClient()
    obj = api.deserialize(json.dumps(doc), name, 'application/json')  # raises on a wrong type or a missing field
    assert api.sanitize_for_serialization(obj) == doc, f'{what} changes in a round trip through {name}'
    return obj


def test_unknown_field_check_catches_typos():
    dep = next(d for d in _docs() if d['kind'] == 'Deployment')
    assert unknown_fields(dep, 'V1Deployment') == []
    bad = json.loads(json.dumps(dep))
    bad['spec']['template']['spec']['containers'][0]['securityContext']['readOnlyRootFileSystem'] = True
    bad['spec']['template']['spec']['volumes'][0]['emptyDir']['sizelimit'] = '1Gi'
    errors = unknown_fields(bad, 'V1Deployment', 'Deployment')
    assert len(errors) == 2 and 'containers[0].securityContext.readOnlyRootFileSystem' in errors[0], errors
    assert 'volumes[0].emptyDir.sizelimit' in errors[1], errors
    bad = json.loads(json.dumps(dep))
    bad['spec']['template']['spec']['securityContext']['runAsNonRoot'] = 'yes'
    with pytest.raises(Exception, match='runAsNonRoot'): validate(bad)


def test_rendered_objects_are_valid_kubernetes_objects(rendered):
    kinds = sorted(d['kind'] for d in rendered)
    assert kinds == sorted(['Namespace', 'ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding',
                            'Secret', 'Service', 'Deployment'])
    for d in rendered: validate(d)
    cluster_scoped = {'Namespace', 'ClusterRole', 'ClusterRoleBinding'}
    for d in rendered:
        assert d['metadata'].get('namespace') == (None if d['kind'] in cluster_scoped else NAMESPACE), d['metadata']
    assert next(d for d in rendered if d['kind'] == 'Namespace')['metadata']['name'] == NAMESPACE
    # the rendered RBAC is the one checked against the backend's calls
    assert _rules('ClusterRole', rendered) == _rules('ClusterRole') and _rules('Role', rendered) == _rules('Role')
    for b in (d for d in rendered if d['kind'].endswith('Binding')):
        assert b['subjects'] == [{'kind': 'ServiceAccount', 'name': 'lwmecps-nb', 'namespace': NAMESPACE}]


def _one(docs, kind):
    found = [d for d in docs if d['kind'] == kind]
    assert len(found) == 1, f'{len(found)} {kind} objects'
    return found[0]


def _api_container(docs):
    pod = _one(docs, 'Deployment')['spec']['template']['spec']
    assert len(pod['containers']) == 1
    return pod, pod['containers'][0]


def test_deployment_is_hardened(rendered):
    from kubernetes.utils import parse_quantity
    dep = _one(rendered, 'Deployment')
    # one replica, never two at once: the runner fails tasks left running at start (a second pod's live ones)
    assert dep['spec']['replicas'] == 1 and dep['spec']['strategy'] == {'type': 'Recreate'}
    pod, api = _api_container(rendered)
    assert pod['securityContext'] == {'runAsNonRoot': True, 'runAsUser': 10001, 'runAsGroup': 10001, 'fsGroup': 10001,
                                      'seccompProfile': {'type': 'RuntimeDefault'}}
    sc = api['securityContext']
    assert sc['allowPrivilegeEscalation'] is False and sc['readOnlyRootFilesystem'] is True
    assert sc['capabilities'] == {'drop': ['ALL']} and not sc.get('privileged') and 'runAsUser' not in sc
    assert pod.get('hostNetwork') is not True and pod.get('hostPID') is not True
    assert pod['automountServiceAccountToken'] is True  # the kubernetes backend uses the in-cluster config
    assert pod['serviceAccountName'] == _one(rendered, 'ServiceAccount')['metadata']['name']
    res = api['resources']
    for key in ('cpu', 'memory'):
        assert key in res['requests'] and key in res['limits'], f'resources.{{requests,limits}}.{key} missing'
    for key, limit in res['limits'].items():
        assert parse_quantity(res['requests'][key]) <= parse_quantity(limit), f'{key}: request above limit'
    assert parse_quantity(res['requests']['memory']) >= parse_quantity('1Gi')  # PPO training runs in this process
    env = {e['name']: e for e in api['env']}
    assert env['WANDB_MODE']['value'] == 'offline'
    assert env['MONGODB_URL']['valueFrom']['secretKeyRef']['optional'] is True


def test_probes_use_livez_and_readyz_on_the_served_port(rendered):
    pod, api = _api_container(rendered)
    ports = {p['name']: p['containerPort'] for p in api['ports']}
    paths = {}
    for probe in ('startupProbe', 'livenessProbe', 'readinessProbe'):
        get = api[probe]['httpGet']
        assert ports.get(get['port'], get['port']) == 8010, f'{probe} probes port {get["port"]}'
        paths[probe] = get['path']
    assert paths == {'startupProbe': '/livez', 'livenessProbe': '/livez', 'readinessProbe': '/readyz'}
    args = api['args']
    assert args[args.index('serve') + 1:].count('--host') == 1 and args[args.index('--host') + 1] == '0.0.0.0'
    if '--port' in args: assert int(args[args.index('--port') + 1]) == 8010
    svc = _one(rendered, 'Service')
    (port,) = svc['spec']['ports']
    assert port['port'] == 8010 and ports.get(port['targetPort'], port['targetPort']) == 8010
    pod_labels = _one(rendered, 'Deployment')['spec']['template']['metadata']['labels']
    assert svc['spec']['selector'].items() <= pod_labels.items()


def _mount_of(path, mounts):
    "The volumeMount whose folder holds `path` (the deepest)."
    holding = [m for m in mounts if path == m['mountPath'] or path.startswith(m['mountPath'].rstrip('/') + '/')]
    return max(holding, key=lambda m: len(m['mountPath']), default=None)


def test_token_secret_is_generated_mounted_and_referenced(rendered):
    secret = _one(rendered, 'Secret')
    pod, api = _api_container(rendered)
    name = secret['metadata']['name']
    assert name.startswith('lwmecps-nb-api-token')
    assert base64.b64decode(secret['data']['token']).decode() == TOKEN
    (vol,) = [v for v in pod['volumes'] if 'secret' in v]
    assert vol['secret']['secretName'] == name  # kustomize rewrote the reference to the hashed name
    env = {e['name']: e.get('value') for e in api['env']}
    token_file = env['LWMECPS_API_TOKEN_FILE']
    mount = _mount_of(token_file, api['volumeMounts'])
    assert mount and mount['name'] == vol['name'] and mount['readOnly'] is True, (token_file, api['volumeMounts'])
    file_name = token_file[len(mount['mountPath'].rstrip('/')) + 1:]
    keys = {i['path']: i['key'] for i in vol['secret'].get('items', [])} or {k: k for k in secret['data']}
    assert keys.get(file_name) == 'token', f'{token_file} is not the Secret key token'
    args = api['args']
    assert '--token-file' not in args or args[args.index('--token-file') + 1] == token_file
    assert not any(TOKEN in json.dumps(d) for d in rendered if d['kind'] != 'Secret')  # only the Secret holds it


def test_everything_written_goes_to_writable_volumes(rendered):
    pod, api = _api_container(rendered)
    volumes = {v['name']: v for v in pod['volumes']}
    env = {e['name']: e.get('value') for e in api['env']}
    for var in ('LWMECPS_HOME', 'HOME', 'TMPDIR', 'MPLCONFIGDIR', 'WANDB_DIR'):
        mount = _mount_of(env[var], api['volumeMounts'])
        assert mount and not mount.get('readOnly'), f'{var}={env[var]} is not on a writable volume'
        assert {'emptyDir', 'persistentVolumeClaim'} & set(volumes[mount['name']]), volumes[mount['name']]
    assert _mount_of('/tmp/x', api['volumeMounts'])['mountPath'] == '/tmp'  # tempfile's default scratch folder


@pytest.mark.parametrize('kubectl', _kubectls(), ids=lambda k: k or 'no-kubectl')
def test_missing_token_file_fails_clearly(kubectl, tmp_path):
    kubectl = _need(kubectl)
    folder = tmp_path / 'kubernetes'
    shutil.copytree(DEPLOY, folder, ignore=shutil.ignore_patterns('api-token.txt'))
    r = _kustomize(kubectl, folder)
    assert r.returncode != 0 and 'api-token.txt' in r.stderr + r.stdout, (r.returncode, r.stderr)


# ---- the Dockerfile, statically -------------------------------------------------------------------------------

def _instructions(text:str) -> list:
    "(INSTRUCTION, arguments) of a Dockerfile: continuation lines joined, comments and blank lines dropped."
    out, cur = [], ''
    for line in text.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith('#')): continue
        if cur and line.lstrip().startswith('#'): continue  # a comment inside a continued instruction
        if line.rstrip().endswith('\\'):
            cur += line.rstrip()[:-1] + ' '
            continue
        cur += line
        word, _, rest = cur.strip().partition(' ')
        out.append((word.upper(), rest.strip()))
        cur = ''
    return out


def _stages():
    "The Dockerfile's stages: [(base image with global ARGs substituted, [instructions])]; and the global ARGs."
    args, stages = {}, []
    for word, rest in _instructions(DOCKERFILE.read_text()):
        if word == 'ARG' and not stages:
            k, _, v = rest.partition('=')
            args[k] = v
        elif word == 'FROM':
            image = re.sub(r'\$\{?(\w+)\}?', lambda m: args.get(m[1], m[0]), rest.split()[0])
            stages.append((image, []))
        else:
            assert stages, f'{word} before the first FROM'
            stages[-1][1].append((word, rest))
    return stages, args


def _json_form(rest:str) -> list:
    value = json.loads(rest)
    assert isinstance(value, list), f'not the exec (JSON) form: {rest}'
    return value


def _env(instrs) -> dict:
    env = {}
    for word, rest in instrs:
        if word == 'ENV':
            for item in shlex.split(rest):
                k, _, v = item.partition('=')
                env[k] = v
    return env


def _docker_ignored(path:str) -> bool:
    "Whether .dockerignore keeps `path` (relative to the repository) out of the build context (last match wins)."
    def matches(pattern, p):
        rx = re.escape(pattern.strip('/')).replace(r'\*\*/', '(?:.*/)?').replace(r'\*\*', '.*')
        rx = rx.replace(r'\*', '[^/]*').replace(r'\?', '[^/]')
        rx = re.sub(r'\\\[(.*?)\\\]', lambda m: '[' + m[1].replace('\\', '') + ']', rx)
        parts = p.split('/')
        return any(re.fullmatch(rx, '/'.join(parts[:i])) for i in range(1, len(parts) + 1))
    ignored = False
    for line in (ROOT / '.dockerignore').read_text().splitlines():
        line = line.strip()
        if not line or line.startswith('#'): continue
        if line.startswith('!'):
            if matches(line[1:], path): ignored = False
        elif matches(line, path): ignored = True
    return ignored


def test_dockerignore_matcher():
    "The matcher the checks above and below rely on: globs, ** and parent folders."
    assert _docker_ignored('lwmecps_nb/__pycache__/x.pyc') and _docker_ignored('nbs/.ipynb_checkpoints/a.ipynb')
    assert not _docker_ignored('lwmecps_nb/cli.py') and not _docker_ignored('setup.py')


def test_dockerfile_is_multi_stage_pinned_and_non_root():
    stages, _ = _stages()
    assert len(stages) >= 2, 'build the wheel in one stage, run from a clean one'
    for image, _ in stages:
        assert ':' in image and not image.endswith(':latest') and not re.search(r':[^@]*latest', image), image
        pinned = re.fullmatch(r'python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?', image)
        assert pinned, f'{image}: pin a Python 3.11 patch release of the slim image'
    final = stages[-1][1]
    assert any(w == 'COPY' and '--from=' in r for w, r in final), 'the final stage copies the build stage\'s result'
    users = [r for w, r in final if w == 'USER']
    assert users, 'the final stage sets no USER (it would run as root)'
    uid, _, gid = users[-1].partition(':')
    assert uid.isdigit() and int(uid) != 0 and (not gid or (gid.isdigit() and int(gid) != 0)), users[-1]
    pod = _one(_docs(), 'Deployment')['spec']['template']['spec']
    assert int(uid) == pod['securityContext']['runAsUser']  # runAsNonRoot can check a numeric USER
    runs = ' '.join(r for w, r in final if w == 'RUN')
    assert not re.search(r'\b(gcc|g\+\+|clang|build-essential|make|cmake|apt-get install)\b', runs), runs
    labels = ' '.join(r for w, r in final if w == 'LABEL')
    for key in ('title', 'source', 'version', 'licenses'):
        assert f'org.opencontainers.image.{key}=' in labels, f'OCI label {key} missing'


def test_dockerfile_installs_cpu_torch_and_the_package_with_constraints():
    stages, _ = _stages()
    runs = [r for _, instrs in stages for w, r in instrs if w == 'RUN']
    pins = dict(re.findall(r'^(torch)==(\S+)', (ROOT / 'constraints.txt').read_text(), re.M))
    torch_runs = [r for r in runs if re.search(r'\btorch==', r)]
    assert torch_runs, 'no RUN installs torch'
    for r in torch_runs:
        assert f'torch=={pins["torch"]}' in r.split(), f'torch is pinned at {pins["torch"]} in constraints.txt: {r}'
        assert re.search(r'--index-url[ =]https://download\.pytorch\.org/whl/cpu\b', r), f'not the CPU index: {r}'
    assert any(re.search(r'pip install .*-c constraints\.txt', r) for r in runs), \
        'the package is not installed with constraints.txt'
    assert any('pip wheel' in r for r in runs), 'no wheel is built'
    assert any(re.search(r'\[server,k8s,tracking\]', r) for r in runs), 'the server image needs the server, k8s and tracking extras'


def test_dockerfile_copies_only_what_exists_and_is_in_the_context():
    stages, _ = _stages()
    copies = [r for _, instrs in stages for w, r in instrs if w in ('COPY', 'ADD') and '--from=' not in r]
    assert copies
    for r in copies:
        parts = [p for p in (_json_form(r) if r.startswith('[') else r.split()) if not p.startswith('--')]
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f'COPY {src}: not in the repository'
            assert not _docker_ignored(src), f'COPY {src}: .dockerignore excludes it'


def test_dockerfile_runs_the_server_with_a_token_on_the_services_port():
    stages, _ = _stages()
    final = stages[-1][1]
    entry = [_json_form(r) for w, r in final if w == 'ENTRYPOINT']
    cmd = [_json_form(r) for w, r in final if w == 'CMD']
    assert entry and entry[-1] == ['lwmecps-nb'], entry
    assert cmd, 'no CMD'
    cmd = cmd[-1]
    assert cmd[0] == 'serve' and cmd[cmd.index('--host') + 1] == '0.0.0.0'
    from lwmecps_nb.core import DEFAULT_SERVER_PORT
    port = int(cmd[cmd.index('--port') + 1]) if '--port' in cmd else DEFAULT_SERVER_PORT
    exposed = {int(p.split('/')[0]) for w, r in final if w == 'EXPOSE' for p in r.split()}
    svc = _one(_docs(), 'Service')
    assert exposed == {port} == {svc['spec']['ports'][0]['port']}, (exposed, port)
    # the token file the image expects is where the Deployment mounts the Secret
    token_file = cmd[cmd.index('--token-file') + 1]
    pod = _one(_docs(), 'Deployment')['spec']['template']['spec']
    (api,) = pod['containers']
    assert token_file == {e['name']: e.get('value') for e in api['env']}['LWMECPS_API_TOKEN_FILE']
    assert 'command' not in api  # the Deployment passes arguments to the image's ENTRYPOINT, it does not replace it
    assert api['args'][0] != 'lwmecps-nb', 'args follow the ENTRYPOINT lwmecps-nb: do not repeat it'


def test_dockerfile_writes_only_to_volumes():
    "A read-only root filesystem: every place the image writes to is a VOLUME (an emptyDir in the Deployment)."
    stages, _ = _stages()
    final = stages[-1][1]
    env = _env(final)
    volumes = [v for w, r in final if w == 'VOLUME' for v in (_json_form(r) if r.startswith('[') else r.split())]
    assert '/tmp' in volumes
    for var in ('LWMECPS_HOME', 'HOME', 'TMPDIR', 'MPLCONFIGDIR', 'WANDB_DIR'):
        assert var in env, f'ENV {var} unset'
        assert any(env[var] == v or env[var].startswith(v.rstrip('/') + '/') for v in volumes), f'{var}={env[var]}'
    pod = _one(_docs(), 'Deployment')['spec']['template']['spec']
    mounts = {m['mountPath'] for m in pod['containers'][0]['volumeMounts']}
    assert set(volumes) <= mounts, f'the Deployment mounts no volume at {set(volumes) - mounts}'
