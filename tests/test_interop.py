"""Stable-Baselines3 interop both ways: an SB3 PPO zip as our model and transfer source, our model as an SB3 PPO zip."""
import dataclasses
import sys

import numpy as np
import pytest
import torch

sb3 = pytest.importorskip('stable_baselines3')
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize  # noqa: E402

from lwmecps_nb.cluster import LoadSpec  # noqa: E402
from lwmecps_nb.interop import load_sb3, rollout_observations, save_sb3, sb3_vecnormalize_path  # noqa: E402
from lwmecps_nb.policies import ActorCritic  # noqa: E402
from lwmecps_nb.ppo import PPOConfig, load_model, train_ppo  # noqa: E402
from lwmecps_nb.tasks import make_env, preset  # noqa: E402
from lwmecps_nb.transfer import TransferConfig, transfer_learn  # noqa: E402


def sb3_rollout(model, vecnorm, steps=200, seed=1):
    "Raw observations of `tiny` visited by SB3's own sampled actions (SB3 alone decides where the rollout goes)."
    env, out = make_env('tiny'), []
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        out.append(obs)
        action, _ = model.predict(vecnorm.normalize_obs(obs[None]), deterministic=False)
        obs, _, term, trunc, _ = env.step(action[0])
        if term or trunc: obs, _ = env.reset()
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope='module')
def sb3_source(tmp_path_factory):
    "SB3 PPO trained 2,048 steps on KubeMEC-v0 `tiny` (seed 0) behind VecNormalize, saved the SB3 way."
    d = tmp_path_factory.mktemp('sb3')
    venv = VecNormalize(DummyVecEnv([lambda: make_env('tiny')]), gamma=0.9)
    model = PPO('MlpPolicy', venv, n_steps=512, batch_size=128, n_epochs=2, gamma=0.9, seed=0, device='cpu')
    model.learn(2048)
    path = d / 'sb3_tiny.zip'
    model.save(path); venv.save(sb3_vecnormalize_path(path))
    venv.training = False
    return path, model, venv


def test_an_sb3_zip_acts_exactly_like_sb3_and_is_a_transfer_source(sb3_source):
    path, model, venv = sb3_source
    loaded = load_sb3(path, env='tiny')
    ckpt = loaded.checkpoint
    assert ckpt['model_type'] == 'sb3_ppo' and ckpt['source'] == str(path)
    assert ckpt['vecnormalize'] == str(path.with_name('sb3_tiny.vecnormalize.pkl'))
    assert ckpt['sb3']['hyperparameters']['n_steps'] == 512 and ckpt['hyperparameters']['discount_factor'] == 0.9
    assert ckpt['value_fit']['method'] == 'least_squares' and ckpt['value_fit']['observations'] == 512
    obs = sb3_rollout(model, venv)
    theirs, _ = model.predict(venv.normalize_obs(obs), deterministic=True)
    with torch.no_grad(): ours = loaded.model.mode(loaded.model(torch.as_tensor(obs))[0]).numpy()
    agree = int((ours == theirs).all(1).sum())
    print(f'greedy actions agree on {agree}/{len(obs)} observations; value fit {ckpt["value_fit"]}')
    assert agree == len(obs)
    # a transfer from the zip: to `tiny` under a busier day; feature extraction keeps SB3's actor trunk bit for bit
    busier = dataclasses.replace(preset('tiny'), load=LoadSpec('diurnal', level=20), name='tiny-busier')
    res = transfer_learn(str(path), {'spec': busier},
                         TransferConfig(transfer_type='feature_extraction', total_episodes=8, num_envs=4,
                                        learning_rate=1e-3), compare=False, progress=False)
    assert isinstance(res.model, ActorCritic) and len(res.returns()) == 8
    for k in (0, 1):
        assert torch.equal(res.model.layers[k].weight, model.policy.mlp_extractor.policy_net[2 * k].weight)
    mean = torch.as_tensor(venv.obs_rms.mean)
    torch.testing.assert_close(res.model.normalizer.mean.double(), mean, rtol=0, atol=1e-6)


def test_our_model_runs_in_sb3_with_the_same_actions_and_values(tmp_path):
    res = train_ppo('tiny', PPOConfig(total_episodes=16, num_envs=8, seed=0), progress=False)
    res.save(tmp_path / 'ours.pt')
    ours = load_model(tmp_path / 'ours.pt').model
    zip_path, vn_path = save_sb3(load_model(tmp_path / 'ours.pt'), tmp_path / 'ours.zip')
    assert vn_path == tmp_path / 'ours.vecnormalize.pkl'
    vn = VecNormalize.load(vn_path, DummyVecEnv([lambda: make_env('tiny')]))
    vn.training = False
    back = PPO.load(zip_path, env=vn, device='cpu')
    obs = rollout_observations(make_env('tiny'), ours, 200, seed=3)
    with torch.no_grad():
        logits, values = ours(torch.as_tensor(obs))
        sb3_values = back.policy.predict_values(torch.as_tensor(vn.normalize_obs(obs))).squeeze(-1)
    actions, _ = back.predict(vn.normalize_obs(obs), deterministic=True)
    agree = int((actions == ours.mode(logits).numpy()).all(1).sum())
    diff = (sb3_values - values).abs().max().item()
    print(f'greedy actions agree on {agree}/{len(obs)} observations; largest value difference {diff:.2e}')
    assert agree == len(obs)
    assert torch.allclose(sb3_values, values, atol=1e-5)
    vn.training = True
    before = back.policy.action_net.weight.detach().clone()
    back.learn(total_timesteps=back.n_steps)  # SB3 goes on training it: a rollout and an update
    assert back.num_timesteps >= back.n_steps and not torch.equal(before, back.policy.action_net.weight)


def test_what_cannot_be_mapped_is_refused_with_its_reason(sb3_source, tmp_path, monkeypatch):
    path, _, _ = sb3_source
    with pytest.raises(ValueError, match=r'SB3 model sb3_tiny.zip is incompatible with the environment \(4 nodes'):
        load_sb3(path, env='cluster-a')
    with pytest.raises(ValueError, match='the source model is incompatible with the environment'):
        transfer_learn(str(path), 'cluster-b', progress=False)
    PPO('MlpPolicy', 'Pendulum-v1', device='cpu').save(tmp_path / 'pendulum.zip')
    with pytest.raises(ValueError, match=r'acts in Box\(.*\); ActorCritic needs a flat MultiDiscrete action space'):
        load_sb3(tmp_path / 'pendulum.zip')
    PPO('MlpPolicy', make_env('tiny'), policy_kwargs=dict(activation_fn=torch.nn.ELU), device='cpu').save(
        tmp_path / 'elu.zip')
    with pytest.raises(ValueError, match='uses activation ELU; ActorCritic has Tanh or ReLU'):
        load_sb3(tmp_path / 'elu.zip')
    with pytest.raises(ValueError, match='SB3 model file not found'):
        load_sb3(tmp_path / 'missing.zip')
    with pytest.raises(ValueError, match='VecNormalize file not found'):
        load_sb3(path, vecnormalize=tmp_path / 'missing.pkl')
    monkeypatch.setitem(sys.modules, 'stable_baselines3', None)
    with pytest.raises(ImportError, match=r'needs stable-baselines3: pip install "lwmecps_nb\[bench\]"'):
        load_sb3(path)
