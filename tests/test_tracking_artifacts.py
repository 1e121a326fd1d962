"A model file produced inside a W&B run is logged to it as an artifact of type `model`, read back from the offline run."
import base64
import hashlib
import json
import os
import subprocess

from conftest import ROOT, script

from lwmecps_nb.core import Settings
from lwmecps_nb.store import MemoryTaskStore
from lwmecps_nb.runner import TaskRunner
from lwmecps_nb.tracking import Tracker, offline_artifacts


def md5_b64(data: bytes) -> str:
    "W&B's digest of a file in an artifact manifest: the MD5, base64."
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_cli_train_transfer_and_meta_log_their_model_files(tmp_path):
    env = {**os.environ, 'LWMECPS_HOME': str(tmp_path), 'WANDB_MODE': 'offline', 'WANDB_DATA_DIR': str(tmp_path / 'wandb-data')}
    cli = lambda *argv: subprocess.run([script('lwmecps-nb'), *argv, '--wandb', 'on', '--json'], cwd=ROOT, capture_output=True,
                                       text=True, timeout=300, env=env)
    models = {'training': tmp_path / 'm.pt', 'transfer': tmp_path / 'adapted.pt', 'meta': tmp_path / 'meta.pt'}
    runs = [cli('train', '--env-config', 'tiny', '--episodes', '4', '--num-envs', '2', '--eval-episodes', '1', '--out', str(models['training'])),
            cli('transfer', '--source', str(models['training']), '--env-config', 'tiny', '--episodes', '4', '--num-envs', '2',
                '--eval-episodes', '1', '--out', str(models['transfer'])),
            cli('meta', '--iterations', '1', '--meta-batch-size', '2', '--trajectories', '2', '--held-out', '1', '--test-steps', '1',
                '--eval-episodes', '1', '--out', str(models['meta']))]
    for r in runs: assert r.returncode == 0, r.stderr[-3000:]
    tracker = Tracker(Settings(home=tmp_path), mode='offline')
    for kind, model in models.items():
        [folder] = sorted((tmp_path / 'wandb' / 'wandb').glob(f'offline-run-*-{kind}-cli-*'))
        [art] = offline_artifacts(folder)
        run_id = folder.name.split('-', 3)[3]
        assert tracker.run_folder(run_id) == folder
        assert (art['type'], art['name'], art['aliases']) == ('model', f'model-{run_id}', ['latest'])
        data = model.read_bytes()
        assert art['files'] == [{'path': model.name, 'size': len(data), 'digest': md5_b64(data)}]
    metadata = {k: offline_artifacts(next((tmp_path / 'wandb' / 'wandb').glob(f'*-{k}-cli-*')))[0]['metadata'] for k in models}
    assert metadata['training'] == {'model_type': 'ppo', 'env': 'tiny', 'command': 'train'}
    assert metadata['transfer']['model_type'] == 'transfer:fine_tuning' and metadata['meta']['model_type'] == 'meta-fomaml'
    assert json.loads(runs[0].stdout)['model'] == str(models['training'])


def test_a_server_training_task_logs_the_model_it_stores(tmp_path, monkeypatch):
    monkeypatch.setenv('WANDB_DATA_DIR', str(tmp_path / 'wandb-data'))
    store, tracker = MemoryTaskStore(), Tracker(Settings(home=tmp_path), mode='offline')
    runner = TaskRunner(store, tracker=tracker, recover=False, stop_poll_s=0.1)
    try:
        t = store.create_task('training', 'tiny ppo', {'env_config': 'tiny', 'hyperparameters': {'num_envs': 2}}, total_episodes=4)
        runner.start('training', t['_id'])
        doc = runner.wait('training', t['_id'], timeout=300)
    finally: runner.shutdown()
    assert doc['state'] == 'completed', doc.get('error_message')
    [art] = offline_artifacts(tracker.run_folder(doc['wandb_run_id']))
    stored = store.task_model('training', t['_id'])  # the file in the store (GridFS on a database)
    assert (art['type'], art['name']) == ('model', f"model-{doc['wandb_run_id']}")
    assert art['metadata'] == {'kind': 'training', 'task_id': str(t['_id']), 'task_name': 'tiny ppo'}
    assert art['files'] == [{'path': f"training-{t['_id']}.pt", 'size': len(stored), 'digest': md5_b64(stored)}]


def test_a_disabled_tracker_logs_no_model(tmp_path):
    store = MemoryTaskStore()
    runner = TaskRunner(store, tracker=Tracker(Settings(home=tmp_path), mode='disabled'), recover=False)
    try:
        t = store.create_task('training', 'tiny ppo', {'env_config': 'tiny', 'hyperparameters': {'num_envs': 2}}, total_episodes=2)
        runner.start('training', t['_id'])
        doc = runner.wait('training', t['_id'], timeout=300)
    finally: runner.shutdown()
    assert doc['state'] == 'completed' and doc['wandb_run_id'] is None and store.task_model('training', t['_id'])
    assert not (tmp_path / 'wandb').exists()
