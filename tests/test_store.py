"""The store against a real MongoDB-wire-protocol server (the embedded nx-27017), over TCP, from several threads and processes."""
import subprocess
import sys
import threading

import pytest

from lwmecps_nb.core import Settings
from lwmecps_nb.store import EmbeddedMongo, TaskStateError, TaskStore, connect


@pytest.fixture()
def home(tmp_path):
    yield tmp_path
    EmbeddedMongo(tmp_path / 'mongodb').stop()


def test_concurrent_starts_claim_each_task_once(home):
    store = TaskStore(connect(Settings(home=home, mongodb_database='race')))
    ids = [store.create_task('training', f't{i}', {}, total_episodes=1)['_id'] for i in range(40)]
    claims, errors = [], []

    def worker():
        own = TaskStore(connect(Settings(home=home, mongodb_database='race')))  # one client per thread, as replicas would
        for oid in ids:
            try:
                own.transition('training', oid, 'running', allowed_from=['pending'])
                claims.append(oid)
            except TaskStateError:
                errors.append(oid)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join(timeout=120)
    assert sorted(claims) == sorted(ids)  # every task started exactly once
    assert len(errors) == 3 * len(ids)  # and refused to the three other workers


def test_embedded_server_is_shared_between_processes_and_keeps_data(home):
    code = ('import sys; from lwmecps_nb.core import Settings; from lwmecps_nb.store import EmbeddedMongo, TaskStore, connect;'
            'db = connect(Settings(home=sys.argv[1], mongodb_database="shared"));'
            'print(EmbeddedMongo(sys.argv[1] + "/mongodb").status()["pid"], TaskStore(db).list_tasks("meta")[1])')
    first = subprocess.run([sys.executable, '-c', code, str(home)], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    db = connect(Settings(home=home, mongodb_database='shared'))
    TaskStore(db).create_task('meta', 'm', {}, total_episodes=3)
    second = subprocess.run([sys.executable, '-c', code, str(home)], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    pid1, n1 = first.stdout.split(); pid2, n2 = second.stdout.split()
    assert pid1 == pid2 and (n1, n2) == ('0', '1')  # the second process reused the server the first one started
    db.client.close()
    srv = EmbeddedMongo(home / 'mongodb')
    assert srv.stop() and srv.status() is None
    db = connect(Settings(home=home, mongodb_database='shared'))  # a fresh server on the same files
    assert EmbeddedMongo(home / 'mongodb').status()['pid'] != int(pid1)
    assert TaskStore(db).list_tasks('meta')[1] == 1
    db.client.close()


def test_store_imports_without_fcntl():
    # Windows has no fcntl: the store (and so the REST server, the CLI and the panels) must import without it
    code = "import sys; sys.modules['fcntl'] = None; import lwmecps_nb.store as s; print(s.EmbeddedMongo.__name__)"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ['EmbeddedMongo'], r.stderr


def test_stored_data_survives_bad_input(home):
    store = TaskStore(connect(Settings(home=home, mongodb_database='bad')))
    t = store.create_task('transfer', 'x', {'transfer_type': 'fine_tuning'}, total_episodes=2)
    store.transition('transfer', t['_id'], 'running', allowed_from=['pending'])
    store.record_episode('transfer', t['_id'], 1, {'episode_reward': -5.0})
    with pytest.raises(ValueError, match="metric 'episode_reward' of episode 2 must be a number"):
        store.record_episode('transfer', t['_id'], 2, {'episode_reward': 'lots'})
    with pytest.raises(TaskStateError):
        store.delete_task('transfer', t['_id'])
    doc = store.get_task('transfer', t['_id'])
    assert doc['metrics'] == {'episode_reward': [-5.0]} and len(store.results('transfer', t['_id'])) == 1
