"The README promises exactly two commands; the demo one is run here as written (the test one is what CI runs)."
import re
import subprocess

from conftest import BIN, ROOT


def _command(name):
    text = (ROOT / 'README.md').read_text()
    block = re.search(rf'<!-- {name} -->\s*```bash\n(.*?)\n```\s*<!-- /{name} -->', text, re.S)
    assert block, f'README.md has no {name} block'
    return block.group(1).strip()


def test_readme_has_exactly_two_commands():
    text = (ROOT / 'README.md').read_text()
    assert len(re.findall(r'<!-- (demo|test)-command -->', text)) == 2
    assert _command('demo-command').endswith('lwmecps-nb demo')
    assert 'pytest' in _command('test-command')
    ci = (ROOT / '.ci' / 'run').read_text()
    assert 'test-command' in ci, '.ci/run must run the README test command'


def test_readme_demo_command_runs():
    r = subprocess.run(['bash', '-c', _command('demo-command')], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert '| cluster-a | hpa-60 |' in r.stdout and '| cluster-b | oracle |' in r.stdout
    for part in ('PPO source on cluster-a (6000 episodes)', '| fine_tuning |', '| fomaml, meta-learned |', 'report written to lwmecps-demo-report.html'):
        assert part in r.stdout, part
    assert 'PPO episodes' in r.stderr and 'meta-iterations' in r.stdout  # progress bars while it runs
    assert (ROOT / 'lwmecps-demo-report.html').read_text().count('<svg') == 4


def _other_bash_blocks():
    "Every ```bash block of the README but the two commands (the demo is run above, the test command is what CI runs)."
    text = (ROOT / 'README.md').read_text()
    text = re.sub(r'<!-- (demo|test)-command -->.*?<!-- /\1-command -->', '', text, flags=re.S)
    return re.findall(r'```bash\n(.*?)\n```', text, re.S)


EXPECT = {'lwmecps-nb serve': ('"state":"queued"', '"results":['), 'lwmecps-nb train': ('saved model.pt', 'fine_tuning'),
          'lwmecps-nb meta': ('meta-learned init', 'HPA autoscaler on cluster-b'),
          'lwmecps-nb control': ('dry run, nothing is changed', 'stopped after 4 interval(s): decisions model 4')}


def test_every_other_readme_command_runs(tmp_path):
    import os
    blocks = _other_bash_blocks()
    assert len(blocks) == 4, blocks
    env = {**os.environ, 'LWMECPS_HOME': str(tmp_path / 'home'), 'WANDB_MODE': 'offline', 'PATH': f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop('MONGODB_URL', None)
    for block in blocks:
        key = next(k for k in EXPECT if k in block)
        r = subprocess.run(['bash', '-o', 'pipefail', '-c', block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, (block, r.stdout[-3000:], r.stderr[-3000:])
        for part in EXPECT[key]: assert part in r.stdout, (key, part, r.stdout[-3000:])
