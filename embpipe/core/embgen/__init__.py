"""EmbGen: entity–description decomposition, entity clusters, strategy-sampled questions with answers."""
