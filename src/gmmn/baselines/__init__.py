"""The paper's other table rows as models with their own Markov chains: DBN, stacked
contractive autoencoder and deep GSN (recipes and sources in docs/baselines.md).

Each model is an ``nn.Module`` (so ``state_dict`` checkpoints it), has a per-minibatch loss
(:func:`cd_loss` with :func:`cd_negatives` or :class:`PersistentChains`, :func:`cae_loss`,
:func:`walkback_loss`) and a ``sample``-style method that runs its own chain with explicit
``burn_in`` / ``thin`` keywords, the number of chains given by the rows of ``init``, and an
explicit ``torch.Generator``.
"""

from gmmn.baselines.cae import CAE, StackedCAE, cae_loss, cae_step
from gmmn.baselines.chain import ChainSettings, run_chain
from gmmn.baselines.dbn import DBN
from gmmn.baselines.gsn import GSN, salt_and_pepper, walkback_loss
from gmmn.baselines.rbm import RBM, PersistentChains, cd_loss, cd_negatives, sample_rbm

__all__ = [
    "CAE", "DBN", "GSN", "RBM", "ChainSettings", "PersistentChains", "StackedCAE", "cae_loss",
    "cae_step", "cd_loss", "cd_negatives", "run_chain", "salt_and_pepper", "sample_rbm",
    "walkback_loss",
]
