"Shared test setup: the repository root, the console scripts of this interpreter, W&B kept offline."
import os
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
os.environ.setdefault('WANDB_MODE', 'offline')
os.environ.setdefault('MPLBACKEND', 'Agg')
# W&B stages offline artifacts under ~/.local/share/wandb until `wandb sync`: keep the tests' copies out of $HOME
os.environ.setdefault('WANDB_DATA_DIR', tempfile.mkdtemp(prefix='lwmecps-wandb-data-'))


def script(name: str) -> str:
    "Path of a console script installed beside the running interpreter (falls back to PATH)."
    p = BIN / name
    return str(p) if p.exists() else name


@pytest.fixture(scope='session')
def root() -> Path:
    return ROOT


# Every process this test session starts (servers, notebooks, their embedded databases) inherits this marker, so the
# clean-up below stops only this session's embedded servers, never those of another session running beside it.
SESSION_MARKER = f'LWMECPS_TEST_SESSION={uuid.uuid4().hex}'
os.environ['LWMECPS_TEST_SESSION'] = SESSION_MARKER.split('=', 1)[1]


def _embedded_servers() -> set:
    "pids of embedded MongoDB-wire servers (nx-27017) this test session started (its marker) on a temporary folder."
    found = set()
    for p in Path('/proc').iterdir():
        if not p.name.isdigit(): continue
        try:
            cmd = (p / 'cmdline').read_bytes().split(b'\0')
            if not any(b'nx_27017' in c for c in cmd) or b'--data-dir' not in cmd: continue
            folder = cmd[cmd.index(b'--data-dir') + 1].decode(errors='replace')
            mine = SESSION_MARKER.encode() in (p / 'environ').read_bytes().split(b'\0')
            if mine and folder.startswith(tempfile.gettempdir()): found.add(int(p.name))
        except OSError: continue
    return found


@pytest.fixture(scope='session', autouse=True)
def _no_leftover_embedded_servers():
    "A notebook or test that fails before stopping its embedded server would leave it running (it runs detached): stop those at the end."
    import signal
    before = _embedded_servers()
    yield
    for pid in _embedded_servers() - before:
        try: os.kill(pid, signal.SIGTERM)
        except OSError: pass
