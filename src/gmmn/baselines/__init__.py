"""The paper's other table rows as models with their own Markov chains: DBN, stacked
contractive autoencoder and deep GSN (recipes and sources in docs/baselines.md)."""

from gmmn.baselines.chain import ChainSettings, run_chain
from gmmn.baselines.dbn import DBN
from gmmn.baselines.rbm import RBM, PersistentChains, cd_loss, cd_negatives, sample_rbm

__all__ = [
    "DBN", "RBM", "ChainSettings", "PersistentChains", "cd_loss", "cd_negatives", "run_chain",
    "sample_rbm",
]
