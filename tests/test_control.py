"""`lwmecps-nb control` end to end against the simulating KubeTestServer on 127.0.0.1: dry run, live scaling within the
limits, the HPA and hold fallbacks, API faults (500s, slow answers) the loop survives, the Prometheus endpoint scraped
over HTTP, and a clean exit on SIGTERM. Every server listens on loopback; every fault is bounded in count and time."""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch

from conftest import ROOT, script
from lwmecps_nb.baselines import HPAAutoscaler
from lwmecps_nb.cluster import ClusterParams
from lwmecps_nb.control import (FALLBACK_REASONS, PolicyController, ReplicaLimits, add_control_arguments,
                                apply_limits, build_controller, control_main, model_policy)
from lwmecps_nb.envs import KubeMECEnv, observe
from lwmecps_nb.kube import KubeAPIError
from lwmecps_nb.kube_testing import KubeTestServer
from lwmecps_nb.policies import ActorCritic
from lwmecps_nb.ppo import load_model, save_model
from lwmecps_nb.tasks import preset

SPEC = preset('tiny')  # 2 services x 2 nodes, max_pods 3
FAST = ['--interval', '0', '--metrics-port', '0', '--api-timeout', '2', '--api-retries', '1']
WRITES = ('POST', 'PATCH', 'PUT', 'DELETE')


def _parse(*argv):
    p = argparse.ArgumentParser()
    add_control_arguments(p)
    return p.parse_args([str(a) for a in argv])


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
    "An untrained network for the tiny cluster, saved as `lwmecps-nb train` saves one (its spec inside)."
    torch.manual_seed(0)
    return save_model(tmp_path_factory.mktemp('models') / 'tiny.pt', ActorCritic.for_env(KubeMECEnv(SPEC)), SPEC)


@pytest.fixture
def server():
    with KubeTestServer(SPEC, simulate=True) as srv:
        yield srv


def _controller(server, model_file, *extra):
    return build_controller(_parse('--model', model_file, '--test-server', server.url, *FAST, *extra))


def _kube_writes(srv):
    return [(m, p) for m, p in srv.requests if m in WRITES and not p.startswith('/_lwmecps/')]


def _replicas_on_server(srv, ctl):
    "spec.replicas of every managed deployment, as the test server holds them, (D, N)."
    b = ctl.backend
    return np.array([[srv.deployments[(b.namespace, b.names[d][n])]['spec']['replicas'] for n in range(SPEC.n_nodes)]
                     for d in range(SPEC.n_deployments)])


# --- limits --------------------------------------------------------------------------------------------------------

def test_apply_limits_small_cases():
    L = ReplicaLimits(max_per_deployment=3, max_step_change=1)
    assert apply_limits([[1, 1]], [[3, 0]], L).tolist() == [[2, 0]]
    assert apply_limits([[1, 1]], [[0, 0]], L).tolist() == [[1, 0]]  # a service keeps one replica
    assert apply_limits([[0, 2]], [[0, 0]], ReplicaLimits(min_per_service=0)).tolist() == [[0, 0]]
    assert apply_limits([[4, 4]], [[4, 4]], ReplicaLimits(max_per_service=2, max_step_change=1)).tolist() == [[1, 1]]
    assert apply_limits([[0, 0]], [[0, 0]], ReplicaLimits(min_per_deployment=1)).tolist() == [[1, 1]]
    with pytest.raises(ValueError, match='min_per_service'):
        apply_limits([[0, 0]], [[0, 0]], ReplicaLimits(min_per_service=5, max_per_deployment=2))


def test_apply_limits_respects_every_bound_on_random_cases():
    rng, checked = np.random.default_rng(0), 0
    for _ in range(300):
        D, N = rng.integers(1, 4, 2)
        hi = int(rng.integers(1, 5))
        try:
            lim = ReplicaLimits(min_per_deployment=int(rng.integers(0, 2)), max_per_deployment=hi,
                                min_per_service=int(rng.integers(0, 3)), max_per_service=int(rng.integers(1, 2 * N * hi)),
                                max_step_change=int(rng.integers(1, 3)) if rng.random() < 0.7 else None)
            lim.check(N)
        except ValueError: continue  # limits no cluster of this size can meet are refused
        checked += 1
        cur = rng.integers(0, 7, (D, N)).astype(float)
        prop = rng.integers(0, 7, (D, N))
        x = apply_limits(cur, prop, lim)
        assert ((x >= lim.min_per_deployment) & (x <= hi)).all()
        assert ((x.sum(1) >= lim.min_per_service) & (x.sum(1) <= lim.max_per_service)).all()
        if lim.max_step_change:
            lo_w = np.clip(cur - lim.max_step_change, lim.min_per_deployment, hi)
            hi_w = np.clip(cur + lim.max_step_change, lim.min_per_deployment, hi)
            reachable = (lo_w.sum(1) <= lim.max_per_service) & (hi_w.sum(1) >= lim.min_per_service)
            inside = ((x >= lo_w) & (x <= hi_w)).all(1)
            assert inside[reachable].all(), (cur, prop, lim, x)  # the step limit holds wherever the bounds allow it
    assert checked > 150


def test_bad_limits_and_options_are_refused_by_name(server, model_file):
    with pytest.raises(ValueError, match='max_step_change must be a whole number >= 1'):
        ReplicaLimits(max_step_change=0)
    with pytest.raises(ValueError, match='limits: min_per_deployment'):
        _controller(server, model_file, '--min-replicas', 3, '--max-replicas', 2)
    with pytest.raises(ValueError, match='--max-steps must be at least 1'):
        control_main(_parse('--model', model_file, '--test-server', server.url, '--max-steps', 0))
    with pytest.raises(ValueError, match='give --metrics-url'):
        control_main(_parse('--model', model_file))
    with pytest.raises(ValueError, match='--metrics-url needs --group-ids'):
        control_main(_parse('--model', model_file, '--metrics-url', server.url))
    with pytest.raises(ValueError, match='incompatible'):  # the model does not fit cluster-a
        control_main(_parse('--model', model_file, '--env-config', 'cluster-a', '--test-server', server.url))
    with pytest.raises(ValueError, match='give --env-config'):
        control_main(_parse('--test-server', server.url))


# --- dry run and live ----------------------------------------------------------------------------------------------

def test_dry_run_prints_the_plan_and_writes_nothing(server, model_file, capsys):
    assert control_main(_parse('--model', model_file, '--test-server', server.url, *FAST, '--dry-run',
                               '--max-steps', 3)) == 0
    out = capsys.readouterr().out
    assert _kube_writes(server) == []  # no create, no scale
    assert out.count('dry run, nothing is changed') == 3 and 'current -> planned  source' in out
    assert re.search(r'server-bs1-edge\s+none -> \d+\s+model', out)  # the deployments do not exist: none
    assert 'stopped after 3 interval(s): decisions model 3' in out
    assert server.deployments == {}


def test_live_run_scales_to_the_model_plan_within_limits(server, model_file):
    ctl = _controller(server, model_file, '--max-replicas', 2, '--max-change', 1, '--max-service-replicas', 3)
    ctl.clock.reset(0)
    net = load_model(model_file).model
    with ctl:
        assert ctl.run(max_steps=4) == 4
    steps = list(ctl.history)
    assert [d.source for d in steps] == ['model'] * 4 and all(d.error is None for d in steps)
    params = ClusterParams.stack([SPEC])
    for d in steps:  # the plan is the model's greedy action on the observed window, within the limits
        obs = observe(d.state, params, SPEC.max_pods, 900)
        want = apply_limits(d.current, model_policy(net)(obs).reshape(2, 2), ctl.limits)
        assert np.array_equal(d.planned, want)
        assert d.planned.max() <= 2 and (d.planned.sum(1) <= 3).all() and (d.planned.sum(1) >= 1).all()
        assert np.abs(d.planned - d.current).max() <= 1
        assert sorted(d.scaled) == sorted(ctl.backend.names[i][j] for i, j in zip(*np.nonzero(d.planned != d.current)))
    assert np.array_equal(_replicas_on_server(server, ctl), steps[-1].planned)
    patches = [p for m, p in server.requests if m == 'PATCH']
    assert all(p.endswith('/scale') for p in patches) and len(patches) == sum(len(d.scaled) for d in steps)
    assert any(len(d.scaled) for d in steps)


def test_test_app_metrics_drive_the_controller_too(server, model_file):
    ctl = _controller(server, model_file, '--metrics-url', server.url, '--group-ids', ','.join(server.group_ids))
    ctl.clock.reset(0)
    with ctl:
        ctl.run(max_steps=2)
    assert [d.source for d in ctl.history] == ['model', 'model']
    assert np.allclose(ctl.history[-1].state.latency_mean, server._history[-2].latency_mean)


def test_a_real_cluster_through_a_kubeconfig_with_the_test_app_metrics(server, model_file, tmp_path, capsys):
    "The real-cluster path: the API from a kubeconfig, the window from the test app, the time of day from the clock."
    server.reset_window(seed=0)
    kubeconfig = server.write_kubeconfig(tmp_path / 'config')
    args = _parse('--model', model_file, '--kubeconfig', kubeconfig, '--namespace', 'lwmecps', '--metrics-url',
                  server.url, '--group-ids', ','.join(server.group_ids), *FAST)
    ctl = build_controller(args)
    assert ctl.clock is None and ctl.wall_clock
    with ctl:
        ctl.run(max_steps=2)
        t = time.localtime(time.time() - 900)
    d = ctl.history[-1]
    assert [x.source for x in ctl.history] == ['model', 'model'] and ctl.history[0].scaled
    gap = abs(d.state.time_s - (t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec))
    assert min(gap, 86400 - gap) < 120  # the policy sees the local time of day, not the app's time since start
    assert np.array_equal(_replicas_on_server(server, ctl), d.planned)
    assert not any(p.startswith('/_lwmecps/') for m, p in server.requests)  # no test-server clock on a cluster


def test_calls_stay_within_the_rbac(server, model_file):
    from test_deploy import _rules
    ctl = _controller(server, model_file)
    ctl.clock.reset(0)
    with ctl:
        ctl.run(max_steps=3)
    verbs = {('GET', False): 'list', ('GET', True): 'get', ('POST', False): 'create', ('PATCH', True): 'patch',
             ('PUT', True): 'update', ('DELETE', True): 'delete'}
    calls = set()
    for method, path in server.requests:
        if path.startswith('/_lwmecps/'): continue
        m = re.fullmatch(r'/api(?:s/(?P<group>[^/]+))?/v1/(?:namespaces/[^/]+/)?(?P<res>[a-z]+)(?:/(?P<name>[^/]+))?'
                         r'(?P<sub>/scale)?', path)
        calls.add((m['group'] or '', m['res'] + ('/scale' if m['sub'] else ''), verbs[(method, bool(m['name']))]))
    assert ('apps', 'deployments/scale', 'patch') in calls and ('apps', 'deployments', 'create') in calls
    assert calls <= _rules('ClusterRole') | _rules('Role'), calls - (_rules('ClusterRole') | _rules('Role'))


# --- fallbacks -----------------------------------------------------------------------------------------------------

def test_a_model_that_raises_falls_back_to_the_hpa_rule(server, model_file):
    ctl = _controller(server, model_file)
    def broken(obs): raise RuntimeError('boom')
    ctl.policy = broken
    ctl.clock.reset(0)
    with ctl:
        ctl.run(max_steps=3)
    hpa = HPAAutoscaler().bind([SPEC])
    for d in ctl.history:
        assert (d.source, d.reason) == ('hpa', 'model_error')
        want = hpa(np.zeros((1, 1)), {'running': d.state.running[None], 'requests': d.state.requests[None]})
        assert np.array_equal(d.planned, apply_limits(d.current, want.reshape(2, 2), ctl.limits))
    assert np.array_equal(_replicas_on_server(server, ctl), ctl.history[-1].planned)
    assert ctl.metrics.value('lwmecps_controller_fallbacks_total', reason='model_error') == 3
    assert ctl.metrics.value('lwmecps_controller_decisions_total', source='hpa') == 3


def test_a_model_with_non_finite_output_falls_back_to_the_hpa_rule(server, model_file, tmp_path, caplog):
    net = load_model(model_file).model
    with torch.no_grad(): net.layers[0].weight.fill_(float('nan'))
    bad = save_model(tmp_path / 'nan.pt', net, SPEC)
    ctl = build_controller(_parse('--model', bad, '--test-server', server.url, *FAST))
    ctl.clock.reset(0)
    with ctl, caplog.at_level('WARNING', logger='lwmecps_nb.control'):
        ctl.run(max_steps=2)
    assert {(d.source, d.reason) for d in ctl.history} == {('hpa', 'model_output_invalid')}
    assert 'model_output_invalid' in caplog.text and 'using the HPA rule' in caplog.text


def test_missing_window_metrics_hold_the_replicas(server, model_file, caplog):
    ctl = _controller(server, model_file)
    ctl.clock.reset(0)
    with ctl, caplog.at_level('WARNING', logger='lwmecps_nb.control'):
        ctl.run(max_steps=1)
        before = _replicas_on_server(server, ctl)
        patches = sum(m == 'PATCH' for m, p in server.requests)
        server.inject(500, 'GET', '/_lwmecps/window$', times=1)
        server.inject(404, 'GET', '/_lwmecps/window$', times=1)
        server.inject(0, 'GET', '/_lwmecps/window$', times=1, delay_s=4)  # slower than --api-timeout 2
        held = [ctl.step() for _ in range(3)]

        class NaNLatency:  # a source that answers, with values that cannot be used
            def __init__(self, inner): self.inner = inner
            def window(self): return {**self.inner.window(), 'latency_mean': np.full(2, np.nan)}
        ctl.backend.metrics = NaNLatency(ctl.backend.metrics)
        held.append(ctl.step())
    assert [(d.source, d.reason) for d in held] == [('hold', 'metrics_unavailable')] * 3 + [('hold', 'metrics_invalid')]
    assert all(np.array_equal(d.planned, d.current) and d.scaled == [] for d in held)
    assert np.array_equal(_replicas_on_server(server, ctl), before)
    assert sum(m == 'PATCH' for m, p in server.requests) == patches  # nothing was scaled while holding
    v = ctl.metrics.value
    assert v('lwmecps_controller_fallbacks_total', reason='metrics_unavailable') == 3
    assert v('lwmecps_controller_fallbacks_total', reason='metrics_invalid') == 1
    assert v('lwmecps_controller_decisions_total', source='hold') == 4
    assert np.isnan(v('lwmecps_controller_observed_latency_seconds', service='server-bs1'))
    assert caplog.text.count('holding the current replicas') == 4


# --- API faults ----------------------------------------------------------------------------------------------------

def test_500s_on_scale_are_retried_then_skipped_and_the_loop_goes_on(server, model_file, caplog):
    ctl = _controller(server, model_file, '--min-service-replicas', 2)  # the first interval must scale up
    ctl.clock.reset(0)
    with ctl, caplog.at_level('WARNING'):
        ctl.prepare()
        server.inject(500, 'PATCH', '/scale$', times=1)  # retried: the interval succeeds
        first = ctl.step()
        assert first.error is None and first.scaled
        flip = np.where(first.planned < 3, first.planned + 1, first.planned - 1)
        ctl.policy = lambda obs: flip  # a plan that differs from the current replicas everywhere
        server.inject(500, 'PATCH', '/scale$', times=2)  # --api-retries 1: two attempts, both fail
        failed = ctl.step()
        after = ctl.step()
    assert 'HTTP 500' in failed.error and failed.scaled == [] and not np.array_equal(failed.planned, failed.current)
    assert after.error is None and after.scaled  # the next interval tries again, and succeeds
    assert np.array_equal(_replicas_on_server(server, ctl), after.planned)
    assert ctl.metrics.value('lwmecps_controller_api_errors_total', operation='scale') == 1
    assert 'scale failed' in caplog.text and 'the next interval tries again' in caplog.text


def test_slow_api_answers_time_out_and_the_loop_goes_on(server, model_file):
    ctl = build_controller(_parse('--model', model_file, '--test-server', server.url, '--interval', 0,
                                  '--metrics-port', 0, '--api-timeout', 0.2, '--api-retries', 1))
    ctl.clock.reset(0)
    with ctl:
        ctl.prepare()
        server.inject(0, 'GET', '/pods$', times=12, delay_s=1.0)  # more than one interval's attempts
        assert ctl.run(max_steps=2) == 2  # the loop survived
        skipped = [d for d in ctl.history if d.source is None]
        assert skipped and 'list pods' in skipped[0].error
        assert ctl.metrics.value('lwmecps_controller_api_errors_total', operation='observe') == len(skipped)
        server._faults.clear()
        assert ctl.step().source == 'model'  # once the API answers again, decisions resume


def test_a_cluster_that_does_not_match_the_spec_exits_1(model_file, capsys):
    other = preset('cluster-a')  # other node names
    with KubeTestServer(other, simulate=True) as srv:
        assert control_main(_parse('--model', model_file, '--test-server', srv.url, *FAST, '--max-steps', 1)) == 1
    assert "nodes ['edge', 'cloud'] of the cluster spec are not in the cluster" in capsys.readouterr().err


# --- Prometheus and shutdown ---------------------------------------------------------------------------------------

def _scrape(port):
    from prometheus_client.parser import text_string_to_metric_families
    text = urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_prometheus_endpoint_serves_the_metrics(server, model_file):
    ctl = _controller(server, model_file)
    ctl.clock.reset(0)
    with ctl:
        port = ctl.serve_metrics(0)
        ctl.run(max_steps=3)
        ctl.policy = lambda obs: 1 / 0
        ctl.step()
        m = _scrape(port)
        last = ctl.history[-1]
    assert m[('lwmecps_controller_decisions_total', (('source', 'model'),))] == 3
    assert m[('lwmecps_controller_decisions_total', (('source', 'hpa'),))] == 1
    assert m[('lwmecps_controller_fallbacks_total', (('reason', 'model_error'),))] == 1
    for r in FALLBACK_REASONS[1:]: assert m[('lwmecps_controller_fallbacks_total', (('reason', r),))] == 0
    assert m[('lwmecps_controller_decision_duration_seconds_count', ())] == 4
    assert m[('lwmecps_controller_api_errors_total', (('operation', 'scale'),))] == 0
    for s, name in enumerate(SPEC.deployments):
        assert m[('lwmecps_controller_observed_latency_seconds', (('service', name),))] == pytest.approx(
            last.state.latency_mean[s])
        for n, node in enumerate(SPEC.node_names):
            key = (('deployment', ctl.backend.names[s][n]), ('node', node), ('service', name))
            assert m[('lwmecps_controller_replicas', key)] == last.planned[s, n]
    with pytest.raises(OSError):  # closed with the controller
        urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=2)


def test_stop_from_another_thread_ends_the_wait_at_once(server, model_file):
    import threading
    ctl = _controller(server, model_file, '--interval', 3600)
    ctl.clock.reset(0)
    with ctl:
        threading.Timer(0.5, ctl.stop).start()
        assert ctl.run() == 1  # one interval, then the hour-long wait ends at the stop


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _cli_has_control() -> bool:
    try:
        r = subprocess.run([script('lwmecps-nb'), 'control', '--help'], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired): return False
    return r.returncode == 0 and '--dry-run' in r.stdout


@pytest.mark.parametrize('command', ['module', 'cli'])
def test_sigterm_ends_a_run_with_exit_0(server, model_file, command):
    if command == 'cli' and not _cli_has_control():
        pytest.skip('`lwmecps-nb control` is not wired into the CLI yet')
    port = _free_port()
    argv = ['--model', str(model_file), '--test-server', server.url, '--interval', '0.2', '--metrics-port', str(port)]
    cmd = ([script('lwmecps-nb'), 'control', *argv] if command == 'cli' else
           [sys.executable, '-c', 'import sys; from lwmecps_nb.control import main; sys.exit(main())', *argv])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, 'WANDB_MODE': 'offline'})
    try:
        deadline, decisions = time.monotonic() + 120, 0
        while time.monotonic() < deadline and proc.poll() is None and decisions < 2:
            try: decisions = _scrape(port)[('lwmecps_controller_decisions_total', (('source', 'model'),))]
            except OSError: pass
            time.sleep(0.2)
        assert decisions >= 2, proc.communicate(timeout=30) if proc.poll() is not None else 'no decisions in time'
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None: proc.kill(); proc.communicate()
    assert proc.returncode == 0, err
    assert 'stopped after' in out and 'SIGTERM: stopping after the current interval' in err
    with pytest.raises(OSError):
        urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=2)
