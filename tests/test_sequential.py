"""KubeMEC-v1 against clients nobody here wrote: Stable-Baselines3's checker and learner, Gymnasium's vector API."""
import gymnasium as gym
import numpy as np
import pytest

import lwmecps_nb  # registers the environments
from lwmecps_nb.sequential import Dynamics, KubeMECSequentialVectorEnv


def test_stable_baselines3_checks_and_trains_on_kubemec_v1():
    sb3 = pytest.importorskip('stable_baselines3')
    from stable_baselines3.common.env_checker import check_env
    env = gym.make('lwmecps_nb/KubeMEC-v1', max_episode_steps=30, dynamics={'startup_s': 60})
    check_env(env.unwrapped, warn=True)  # raises on any violation of the Gymnasium API as SB3 reads it
    model = sb3.PPO('MlpPolicy', env, n_steps=30, batch_size=30, n_epochs=1, seed=0, device='cpu')
    model.learn(60)  # two rollouts through SB3's own wrappers and buffers
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action)


def test_gymnasium_sync_vector_env_matches_the_native_vector_env():
    # Gymnasium's own SyncVectorEnv over single environments gives what the native batched one gives, seed for seed
    make = lambda: gym.make('lwmecps_nb/KubeMEC-v1', max_episode_steps=5).unwrapped
    sync = gym.vector.SyncVectorEnv([make, make])
    native = KubeMECSequentialVectorEnv(num_envs=2, max_episode_steps=5)
    a, _ = sync.reset(seed=7)
    b, _ = native.reset(seed=[7, 8])
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    for _ in range(4):
        act = rng.integers(0, 4, (2, 16))
        oa, ra, *_ = sync.step(act)
        ob, rb, *_ = native.step(act)
        np.testing.assert_array_equal(oa, ob); np.testing.assert_array_equal(ra, rb)


def test_bad_dynamics_name_the_field():
    with pytest.raises(ValueError, match='dynamics.node_speed'):
        gym.make('lwmecps_nb/KubeMEC-v1', dynamics={'node_speed': [1, 0, 1, 1]})
    with pytest.raises(ValueError, match=r'dynamics.startup_s: give one value or one per node \(4\)'):
        KubeMECSequentialVectorEnv(num_envs=1, dynamics=Dynamics(startup_s=(30, 30)))
