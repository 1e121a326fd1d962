"""Packaging for lwmecps_nb, driven by settings.ini (nbdev 2 layout) and constraints.txt.

Every version pin lives in constraints.txt; requirements named there get its specifier added here,
so `pip install -e .` alone can never pull an unpinned torch or an nbdev/fastcore that breaks.
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

def _name(req): return re.split(r'[\s<>=!~;\[]', req, maxsplit=1)[0].lower().replace('_', '-')

def _constraints():
    path = here/'constraints.txt'
    lines = path.read_text().splitlines() if path.exists() else []
    reqs = [l.split('#')[0].strip() for l in lines]
    return {_name(r): r[len(_name(r)):].strip() for r in reqs if r}

_pins = _constraints()

def _pinned(reqs):
    "Add the constraints.txt specifier to each requirement it names."
    out = []
    for r in reqs.split():
        spec = _pins.get(_name(r), '')
        if spec and spec not in r: r = f'{r},{spec}' if re.search(r'[<>=!~]', r) else f'{r}{spec}'
        out.append(r)
    return out

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
lic = licenses.get(cfg['license'].lower(), (cfg['license'], None))
requirements = _pinned(cfg.get('requirements', ''))
dev_requirements = _pinned(cfg.get('dev_requirements', ''))
bench_requirements = _pinned(cfg.get('bench_requirements', ''))
ray_requirements = _pinned(cfg.get('ray_requirements', ''))
package_data = cfg.get('package_data', '').split()

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=(here/'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    author=cfg['author'], author_email=cfg['author_email'],
    license=lic[0],
    url=cfg['git_url'],
    keywords=cfg['keywords'],
    classifiers=[f'Development Status :: {statuses[int(cfg["status"]) - 1]}',
                 f'Intended Audience :: {cfg["audience"].title()}',
                 f'Natural Language :: {cfg["language"].title()}',
                 f'Programming Language :: Python :: {cfg["min_python"]}'] + ([f'License :: {lic[1]}'] if lic[1] else []),
    packages=setuptools.find_packages(include=[cfg['lib_name'], f'{cfg["lib_name"]}.*']),
    package_data={cfg['lib_name']: package_data},
    include_package_data=True,
    python_requires=f'>={cfg["min_python"]}',
    install_requires=requirements,
    extras_require={'dev': dev_requirements, 'bench': bench_requirements, 'ray': ray_requirements},
    entry_points={'console_scripts': cfg.get('console_scripts', '').split(),
                  'nbdev': [f'{cfg["lib_name"]}={cfg["lib_name"]}._modidx:d']},
    zip_safe=False,
)
