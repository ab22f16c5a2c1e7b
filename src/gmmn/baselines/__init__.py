"""The paper's other table rows as models with their own Markov chains: DBN, stacked
contractive autoencoder and deep GSN (recipes and sources in docs/baselines.md)."""

from gmmn.baselines.cae import CAE, StackedCAE, cae_loss, cae_step
from gmmn.baselines.chain import ChainSettings, run_chain
from gmmn.baselines.dbn import DBN
from gmmn.baselines.rbm import RBM, PersistentChains, cd_loss, cd_negatives, sample_rbm

__all__ = [
    "CAE", "DBN", "RBM", "ChainSettings", "PersistentChains", "StackedCAE", "cae_loss",
    "cae_step", "cd_loss", "cd_negatives", "run_chain", "sample_rbm",
]
