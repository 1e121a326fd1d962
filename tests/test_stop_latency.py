"""A stop is heard inside a rollout and inside an update, not only when an episode ends (issue 22); and the env_config
options that set how long those last are bounded when a task is created, with errors that name the option."""
import math
import threading
import time

import pytest
from pydantic import ValidationError

from lwmecps_nb.ppo import PPOConfig, PPOTrainer
from lwmecps_nb.tasks import MAX_EPISODE_STEPS

CEILING_S = 30  # generous: it only tells a trainer that stops from one that hangs on; no speed is asserted here
LONGEST = {'cluster': 'tiny', 'max_episode_steps': MAX_EPISODE_STEPS}  # no episode ends within these tests


def _train_in_thread(tr: PPOTrainer) -> tuple[threading.Thread, list]:
    "Run `tr.train` in a thread and wait for it at most CEILING_S; the thread and what it raised."
    errors = []
    def run():
        try: tr.train(progress=False)
        except BaseException as e: errors.append(e)  # noqa: BLE001 - reported by the test
    th = threading.Thread(target=run, daemon=True)
    th.start(); th.join(CEILING_S)
    return th, errors


def _true_after(seconds: float, since: list):
    "A should_stop that turns True `seconds` after `since[0]` is set (it stays False until then)."
    return lambda: bool(since) and time.monotonic() - since[0] >= seconds


def test_a_stop_during_a_rollout_ends_training_before_any_episode_ends():
    # a rollout of two whole episodes per environment: checked only between rollouts or episodes, the stop would
    # come after an episode had ended (or, with a budget of ten episodes, not within the ceiling at all)
    cfg = PPOConfig(total_episodes=10, num_envs=2, n_steps=2 * MAX_EPISODE_STEPS, batch_size=256, n_epochs=1)
    started, seen = [], []
    tr = PPOTrainer(LONGEST, cfg, callback=seen.append, should_stop=_true_after(0.5, started))
    started.append(time.monotonic())
    th, errors = _train_in_thread(tr)
    assert not th.is_alive(), f'train() did not return within {CEILING_S} s of a stop asked after 0.5 s'
    assert errors == []
    assert tr.stopped
    assert (tr.episodes_done, seen, tr.history['episodes']) == (0, [], [])  # it stopped before any episode ended
    assert (tr.updates_done, tr.history['updates']) == (0, [])  # the unfinished rollout was dropped, not learnt from
    assert 0 < tr.steps_done < 2 * MAX_EPISODE_STEPS and tr.steps_done % 2 == 0  # whole steps of both environments


def test_a_stop_during_an_update_ends_it_between_minibatches():
    # 1,000 epochs of 32 minibatches: checked only between updates, the stop would wait for all 32,000 optimiser steps
    cfg = PPOConfig(total_episodes=10, num_envs=2, n_steps=128, batch_size=8, n_epochs=1000)
    first_step = []  # when the optimiser first stepped: the stop comes 0.5 s into the first update
    tr = PPOTrainer(LONGEST, cfg, should_stop=_true_after(0.5, first_step))
    opt_steps = []
    def count(*_):
        if not first_step: first_step.append(time.monotonic())
        opt_steps.append(1)
    tr.optimizer.register_step_post_hook(count)
    th, errors = _train_in_thread(tr)
    assert not th.is_alive(), f'train() did not return within {CEILING_S} s of a stop asked during an update'
    assert errors == []
    assert tr.stopped and tr.updates_done == 1 and tr.episodes_done == 0
    full = cfg.n_epochs * math.ceil(cfg.n_steps * cfg.num_envs / cfg.batch_size)
    assert 0 < len(opt_steps) < full, (len(opt_steps), full)  # the update ended part of the way through its epochs
    assert tr.history['updates'][0]['stopped'] is True
    assert tr.steps_done == cfg.n_steps * cfg.num_envs  # no second rollout began


BAD_OPTIONS = [('max_episode_steps', 0), ('max_episode_steps', 10_000_000), ('max_episode_steps', 10**12),
               ('max_episode_steps', 1e7), ('max_episode_steps', True), ('max_episode_steps', MAX_EPISODE_STEPS + 1),
               ('step_seconds', -900), ('step_seconds', 0), ('step_seconds', 10**9), ('step_seconds', 7),
               ('start', 10**9), ('start', -1), ('sla_weight', 'high'), ('replica_cost', -1.0)]


@pytest.mark.parametrize('option,value', BAD_OPTIONS)
def test_env_config_options_are_refused_at_create_time_naming_the_option(option, value):
    from lwmecps_nb.api import BODIES, check_env_config
    with pytest.raises(ValueError, match=rf'env_config\.{option} must be'):
        check_env_config({'cluster': 'cluster-a', option: value})
    with pytest.raises(ValidationError) as e:  # what the server answers with 422
        BODIES['training'].model_validate({'env_config': {'cluster': 'cluster-a', option: value}})
    (err,) = e.value.errors()
    assert err['loc'] == ('env_config',) and f'env_config.{option}' in err['msg']


def test_env_config_options_at_their_bounds_are_accepted():
    from lwmecps_nb.api import check_env_config
    ok = {'cluster': 'cluster-a', 'max_episode_steps': MAX_EPISODE_STEPS, 'step_seconds': 86_400, 'start': 0}
    assert check_env_config(ok) == ok
    v1 = {'cluster': 'cluster-a', 'env_id': 'lwmecps_nb/KubeMEC-v1', 'max_episode_steps': 10_080, 'step_seconds': 60}
    assert check_env_config(v1) == v1  # a week of one-minute intervals
    with pytest.raises(ValueError, match=r'env_config\.max_episode_steps x step_seconds must be at most 604800 s'):
        check_env_config({**v1, 'step_seconds': 120})  # two weeks of load drawn at reset
