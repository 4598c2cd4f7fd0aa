import importlib

import pytest


@pytest.fixture(params=["ppo_atari", "sprig_ppo_atari"])
def twin(request):
    """Each training script in turn, imported: for the pieces both scripts hold (wrappers, GAE, the PPO loss)."""
    return importlib.import_module(request.param)
