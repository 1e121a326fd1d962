"""Packaging for lwmecps_nb, driven by settings.ini (nbdev 2 layout).

The requirements are ranges (settings.ini); the exact versions README and CI install with are in constraints.txt
(`pip install -c constraints.txt -e ".[dev]"`). Extras: every `<name>_requirements` key of settings.ini, `all` (their
union) and `dev` (all and the tools); `lwmecps_nb[x]` inside a list stands for extra x's requirements.
"""
import re
from configparser import ConfigParser
from pathlib import Path

import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']
for key in 'lib_name version description author author_email license min_python keywords git_url'.split():
    assert key in cfg, f'settings.ini is missing `{key}`'

_raw = {k[:-len('_requirements')]: cfg[k].split() for k in cfg if k.endswith('_requirements') and k != 'dev_requirements'}

def _expand(reqs, seen=()):
    "A requirement list with `lwmecps_nb[x]` replaced by extra x's list (no self-references left for pip)."
    out = []
    for r in reqs:
        m = re.fullmatch(rf"{cfg['lib_name']}\[([\w,]+)\]", r)
        if not m: out.append(r); continue
        for x in m.group(1).split(','):
            if x in seen or x not in _raw: raise ValueError(f'settings.ini: {r} names an unknown or circular extra {x}')
            out += _expand(_raw[x], (*seen, x))
    return list(dict.fromkeys(out))

extras = {k: _expand(v, (k,)) for k, v in _raw.items()}
extras['all'] = list(dict.fromkeys(r for v in extras.values() for r in v))
extras['dev'] = list(dict.fromkeys(extras['all'] + cfg.get('dev_requirements', '').split()))
requirements = cfg.get('requirements', '').split()

licenses = {'apache2': 'Apache-2.0'}  # settings.ini's name -> the SPDX expression
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
lic = licenses.get(cfg['license'].lower(), cfg['license'])
package_data = cfg.get('package_data', '').split()

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=(here/'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    author=cfg['author'], author_email=cfg['author_email'],
    license=lic,
    url=cfg['git_url'],
    keywords=cfg['keywords'],
    license_files=['LICENSE'],
    classifiers=[f'Development Status :: {statuses[int(cfg["status"]) - 1]}',
                 f'Intended Audience :: {cfg["audience"].title()}',
                 f'Natural Language :: {cfg["language"].title()}',
                 f'Programming Language :: Python :: {cfg["min_python"]}'],
    packages=setuptools.find_packages(include=[cfg['lib_name'], f'{cfg["lib_name"]}.*']),
    package_data={cfg['lib_name']: package_data},
    include_package_data=True,
    python_requires=f'>={cfg["min_python"]}',
    install_requires=requirements,
    extras_require=extras,
    entry_points={'console_scripts': cfg.get('console_scripts', '').split(),
                  'nbdev': [f'{cfg["lib_name"]}={cfg["lib_name"]}._modidx:d']},
    zip_safe=False,
)
