"Shared test setup: the repository root, the console scripts of this interpreter, W&B kept offline."
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
os.environ.setdefault('WANDB_MODE', 'offline')
os.environ.setdefault('MPLBACKEND', 'Agg')


def script(name: str) -> str:
    "Path of a console script installed beside the running interpreter (falls back to PATH)."
    p = BIN / name
    return str(p) if p.exists() else name


@pytest.fixture(scope='session')
def root() -> Path:
    return ROOT
