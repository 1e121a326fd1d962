"The README promises exactly two commands; the demo one is run here as written (the test one is what CI runs)."
import re
import subprocess

from conftest import ROOT


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
